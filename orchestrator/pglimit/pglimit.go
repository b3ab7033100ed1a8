// Package pglimit keeps dbtorch's concurrency limits in PostgreSQL, so that
// every process and host sharing the database shares them: two services,
// two CLI runs, or a CI job and the nightly build together never hold more
// slots of a limit than it has.
//
// A slot is a lease: a row (limit, holder, expiry) in a table. The holder
// id is chosen by the caller (Limit.AcquireAs) or generated per Acquire,
// and acquiring is idempotent per holder, so a retried acquire never takes
// two slots. A Store renews the leases its process holds (heartbeats);
// a holder that crashes or is SIGKILLed stops renewing and its slot is
// free again within the lease time. Waiters are served oldest first: each
// waiter has a row with a ticket from a sequence, and a waiter may take a
// slot only when fewer older live waiters are queued than slots are free.
//
// Everything is done in single statements or short transactions (one
// batch, one round trip, serialized per limit by a transaction-level
// advisory lock), and queries use pgx's exec mode (no named prepared
// statements), so the limiter works behind a transaction-pooling proxy
// such as PgBouncer; nothing depends on a session. The tables are created
// by the package (Open, New), idempotently and safely under concurrent
// creators.
//
// Times come from the database's clock, never the hosts', so clock skew
// between hosts does not shorten or lengthen a lease.
package pglimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dbtorch/dbtorch/internal/backoff"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// Defaults of Options.
const (
	DefaultLease  = 30 * time.Second
	DefaultPoll   = 250 * time.Millisecond
	DefaultSchema = "dbtorch"
)

// releaseTimeout bounds how long Release and a cancelled Acquire's
// clean-up try to delete a lease before leaving it to expire.
const releaseTimeout = 5 * time.Second

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// Lease is how long a slot stays held without a heartbeat: a holder
	// that dies frees its slots within Lease, and a waiter that dies leaves
	// the queue within Lease. Zero means DefaultLease.
	Lease time.Duration
	// Heartbeat is how often the Store renews the leases its process
	// holds; zero means Lease/3. It must be shorter than Lease.
	Heartbeat time.Duration
	// Poll is how often a waiter looks for a free slot (spread ±20%);
	// zero means DefaultPoll, capped at Lease/3 so that waiters stay in
	// the queue. A release in this process wakes its own waiters at once.
	Poll time.Duration
	// Holder prefixes the holder ids Acquire generates ("<Holder>#<n>");
	// empty means "<hostname>/<pid>/<random>", unique per Store.
	Holder string
	// Schema is the PostgreSQL schema of the tables (created if missing);
	// empty means DefaultSchema.
	Schema string
	// Logger receives warnings (failed heartbeats, lost leases, retried
	// statements); nil discards them.
	Logger *slog.Logger
}

// Store is a set of limits kept in one PostgreSQL database. It is safe for
// concurrent use; several Stores (in one process or many) on the same
// database and schema share the same limits.
type Store struct {
	pool   *pgxpool.Pool
	owned  bool
	opts   Options
	log    *slog.Logger
	tables tables
	seq    atomic.Int64

	mu     sync.Mutex
	limits map[string]*Limit
	closed bool

	stop chan struct{}
	done chan struct{}
}

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string) and returns a Store over it; Close closes the pool.
// Unless url sets default_query_exec_mode, queries use pgx's exec mode,
// which works behind transaction-pooling proxies.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pglimit: %w", err)
	}
	if !strings.Contains(url, "default_query_exec_mode") {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pglimit: %w", err)
	}
	s, err := New(ctx, pool, opts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// New returns a Store over pool, creating its tables if needed; the
// caller keeps ownership of pool (Close does not close it). Behind a
// transaction-pooling proxy, configure the pool's DefaultQueryExecMode as
// exec or simple protocol.
func New(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Store, error) {
	if opts.Lease == 0 {
		opts.Lease = DefaultLease
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = opts.Lease / 3
	}
	if opts.Poll == 0 {
		opts.Poll = DefaultPoll
	}
	opts.Poll = min(opts.Poll, opts.Lease/3)
	if opts.Schema == "" {
		opts.Schema = DefaultSchema
	}
	switch {
	case opts.Lease < 10*time.Millisecond:
		return nil, fmt.Errorf("pglimit: Lease %v is shorter than 10ms", opts.Lease)
	case opts.Heartbeat <= 0 || opts.Heartbeat >= opts.Lease:
		return nil, fmt.Errorf("pglimit: Heartbeat %v must be positive and shorter than Lease %v", opts.Heartbeat, opts.Lease)
	case opts.Poll <= 0:
		return nil, fmt.Errorf("pglimit: Poll %v must be positive", opts.Poll)
	}
	if opts.Holder == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		opts.Holder = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	s := &Store{pool: pool, opts: opts, log: opts.Logger, tables: tablesIn(opts.Schema),
		limits: map[string]*Limit{}, stop: make(chan struct{}), done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.tables.create(ctx, pool); err != nil {
		return nil, err
	}
	go s.heartbeat()
	return s, nil
}

// Pool returns the Store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close stops the heartbeats, frees every slot this Store's limits still
// hold (best effort: a slot it cannot free expires within the lease), and
// closes the pool if Open made it. Acquire after Close fails.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	limits := make([]*Limit, 0, len(s.limits))
	for _, l := range s.limits {
		limits = append(limits, l)
	}
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	var errs []error
	for _, l := range limits {
		for _, h := range l.heldHolders() {
			errs = append(errs, l.ReleaseAs(context.Background(), h))
		}
	}
	if s.owned {
		s.pool.Close()
	}
	return errors.Join(errs...)
}

// Limit returns the limit name with size slots, the same *Limit for the
// same name. Asking again with another size is an error, as in
// orchestrator.Registry. Stores in other processes may give the limit
// another size: each Store admits its own acquirers while fewer than its
// size of slots are held.
func (s *Store) Limit(name string, size int) (*Limit, error) {
	if name == "" {
		return nil, errors.New("pglimit: empty limit name")
	}
	if size < 1 {
		return nil, fmt.Errorf("pglimit: limit %q: size %d < 1", name, size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.limits[name]; ok {
		if l.size != size {
			return nil, fmt.Errorf("pglimit: limit %q already has %d slots, not %d", name, l.size, size)
		}
		return l, nil
	}
	l := &Limit{s: s, name: name, size: size, wake: make(chan struct{}), held: map[string]uint64{}}
	s.limits[name] = l
	return l, nil
}

// NodeLimit returns an orchestrator.NodeLimit over the limit name (see
// Limit) applying to the nodes applies selects (nil: every node).
func (s *Store) NodeLimit(name string, size int, applies func(*manifest.Node) bool) (orchestrator.NodeLimit, error) {
	l, err := s.Limit(name, size)
	if err != nil {
		return orchestrator.NodeLimit{}, err
	}
	return orchestrator.NodeLimit{Name: name, Limiter: l, Applies: applies}, nil
}

// RelationLocks returns an orchestrator.NodeLimit named "relation" giving
// every node that writes a relation (orchestrator.RelationKey) the
// one-slot limit orchestrator.RelationLockName(key) of this store while
// it runs: builds sharing the database, in any process, never build the
// same relation at once. Put it first in Config.Limits.
func (s *Store) RelationLocks() orchestrator.NodeLimit {
	return orchestrator.NodeLimit{Name: "relation", ForNode: func(n *manifest.Node) (string, orchestrator.Limiter) {
		key := orchestrator.RelationKey(n)
		if key == "" {
			return "", nil
		}
		name := orchestrator.RelationLockName(key)
		l, err := s.Limit(name, 1)
		if err != nil {
			// The caller made the limit with another size: it is the
			// relation's.
			s.mu.Lock()
			l = s.limits[name]
			s.mu.Unlock()
		}
		return key, l
	}}
}

// Lease is a held slot as the database records it.
type Lease struct {
	Holder     string
	AcquiredAt time.Time
	ExpiresAt  time.Time
}

// Holders returns the live leases of the limit name (expired ones left
// out), oldest first: what every process sharing the store holds now.
func (s *Store) Holders(ctx context.Context, name string) ([]Lease, error) {
	var out []Lease
	err := s.retry(ctx, func() error {
		rows, err := s.pool.Query(ctx, s.tables.holders, name)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) {
			var l Lease
			err := r.Scan(&l.Holder, &l.AcquiredAt, &l.ExpiresAt)
			return l, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pglimit: limit %q: %w", name, err)
	}
	return out, nil
}

// heartbeat renews the leases of every limit each Heartbeat until Close.
func (s *Store) heartbeat() {
	defer close(s.done)
	t := time.NewTicker(s.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.renew()
	}
}

// renew renews every held lease in one statement and forgets (with a
// warning) the leases the database no longer has: they expired, for
// instance while the process was paused longer than the lease.
func (s *Store) renew() {
	var names, holders []string
	var grants []uint64
	s.mu.Lock()
	for _, l := range s.limits {
		l.mu.Lock()
		for h, g := range l.held {
			names, holders, grants = append(names, l.name), append(holders, h), append(grants, g)
		}
		l.mu.Unlock()
	}
	s.mu.Unlock()
	if len(holders) == 0 {
		return
	}
	// The leases were renewed a heartbeat ago: this renewal is of use
	// until they expire, Lease - Heartbeat from now (a slow one delays
	// the next tick, it does not pile up).
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Lease-s.opts.Heartbeat)
	defer cancel()
	rows, err := s.pool.Query(ctx, s.tables.renew, names, holders, s.opts.Lease.Milliseconds())
	if err != nil {
		s.log.Warn("pglimit: heartbeat failed; leases expire unless a later one succeeds", "leases", len(holders), "error", err)
		return
	}
	renewed := map[[2]string]bool{}
	var name, holder string
	_, err = pgx.ForEachRow(rows, []any{&name, &holder}, func() error {
		renewed[[2]string{name, holder}] = true
		return nil
	})
	if err != nil {
		s.log.Warn("pglimit: heartbeat failed; leases expire unless a later one succeeds", "leases", len(holders), "error", err)
		return
	}
	for k, h := range holders {
		if renewed[[2]string{names[k], h}] {
			continue
		}
		s.mu.Lock()
		l := s.limits[names[k]]
		s.mu.Unlock()
		// A lease released (and perhaps granted again) while the heartbeat
		// ran is not lost: ReleaseAs forgets the holder before deleting
		// its row, and a new grant has a new number.
		if l.forgetGrant(h, grants[k]) {
			s.log.Warn("pglimit: lease lost (expired before its heartbeat); the slot may be held by another holder meanwhile",
				"limit", names[k], "holder", h)
		}
	}
}

// Limit is one named limit of a Store. It implements orchestrator.Limiter
// (Acquire, Release) with generated holder ids, and AcquireAs/ReleaseAs
// with the caller's. It is safe for concurrent use.
type Limit struct {
	s    *Store
	name string
	size int

	mu    sync.Mutex
	wake  chan struct{}     // closed (and replaced) when this process frees a slot
	held  map[string]uint64 // holders of this process with a lease: their grant's number
	grant uint64            // the last grant's number
	stack []string          // holders taken by Acquire, for Release
}

var _ orchestrator.Limiter = (*Limit)(nil)

// Name returns the limit's name.
func (l *Limit) Name() string { return l.name }

// Size returns the limit's number of slots.
func (l *Limit) Size() int { return l.size }

// Acquire takes a slot under a new holder id, waiting (oldest waiter
// first) until one is free or ctx is done; then it returns ctx's error
// and holds nothing. Release frees a slot taken by Acquire.
func (l *Limit) Acquire(ctx context.Context) error {
	h := l.s.opts.Holder + "#" + strconv.FormatInt(l.s.seq.Add(1), 10)
	if err := l.AcquireAs(ctx, h); err != nil {
		return err
	}
	l.mu.Lock()
	l.stack = append(l.stack, h)
	l.mu.Unlock()
	return nil
}

// Release frees the slot most recently taken by Acquire and not yet
// released (slots of one Limit are interchangeable). It stops renewing
// the lease and deletes it at once, retrying for at most releaseTimeout;
// if the database cannot be reached meanwhile, the lease expires within
// the lease time.
func (l *Limit) Release() {
	l.mu.Lock()
	if len(l.stack) == 0 {
		l.mu.Unlock()
		l.s.log.Error("pglimit: Release without Acquire", "limit", l.name)
		return
	}
	h := l.stack[len(l.stack)-1]
	l.stack = l.stack[:len(l.stack)-1]
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), min(l.s.opts.Lease, releaseTimeout))
	defer cancel()
	if err := l.ReleaseAs(ctx, h); err != nil {
		l.s.log.Warn("pglimit: release failed; the lease expires on its own", "limit", l.name, "holder", h, "error", err)
	}
}

// AcquireAs takes a slot for holder, waiting (oldest waiter first) until
// one is free or ctx is done. Acquiring is idempotent per holder: when
// holder already has a lease (a retried acquire, or another process using
// the same id), AcquireAs renews it and takes no second slot. When ctx
// ends first, AcquireAs removes holder's queue entry and any lease it may
// have been granted meanwhile, and returns ctx's error: it never leaks a
// slot. Until ReleaseAs, the Store renews the lease.
func (l *Limit) AcquireAs(ctx context.Context, holder string) error {
	if holder == "" {
		return fmt.Errorf("pglimit: limit %q: empty holder id", l.name)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	failures := 0
	for {
		if l.s.isClosed() {
			return fmt.Errorf("pglimit: limit %q: store closed", l.name)
		}
		l.mu.Lock()
		wake := l.wake
		l.mu.Unlock()
		granted, err := l.try(ctx, holder)
		switch {
		case err == nil && granted:
			l.mu.Lock()
			l.grant++
			l.held[holder] = l.grant
			l.mu.Unlock()
			return nil
		case ctx.Err() != nil:
			l.abandon(holder)
			return ctx.Err()
		case err != nil && !retryable(err):
			l.abandon(holder)
			return fmt.Errorf("pglimit: limit %q: %w", l.name, err)
		case err != nil:
			failures++
			l.s.log.Warn("pglimit: acquire failed; retrying with the same holder id", "limit", l.name, "holder", holder, "error", err)
			if !backoff.Sleep(ctx, backoff.EqualJitter(backoff.Exponential(l.s.opts.Poll, l.s.opts.Lease/3, 2, failures-1))) {
				l.abandon(holder)
				return ctx.Err()
			}
			continue
		}
		failures = 0
		t := time.NewTimer(backoff.Spread(l.s.opts.Poll, 0.2))
		select {
		case <-ctx.Done():
			t.Stop()
			l.abandon(holder)
			return ctx.Err()
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// ReleaseAs frees holder's slot (and queue entry). Releasing a holder
// without a lease is not an error.
func (l *Limit) ReleaseAs(ctx context.Context, holder string) error {
	l.forget(holder)
	err := l.s.retry(ctx, func() error {
		_, err := l.s.pool.Exec(ctx, l.s.tables.release, l.name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("pglimit: limit %q: release %s: %w", l.name, holder, err)
	}
	l.signal()
	return nil
}

// try is one acquire attempt: in one batch (one implicit transaction,
// serialized per limit), drop expired leases and waiters, renew holder's
// lease if it has one, else queue holder (keeping its ticket) and grant
// it a slot if fewer older waiters are queued than slots are free.
func (l *Limit) try(ctx context.Context, holder string) (bool, error) {
	t := l.s.tables
	lease := l.s.opts.Lease.Milliseconds()
	b := &pgx.Batch{}
	b.Queue(t.lock, l.name)
	b.Queue(t.expire, l.name)
	b.Queue(t.renewOne, l.name, holder, lease)
	b.Queue(t.enqueue, l.name, holder, lease)
	b.Queue(t.grant, l.name, holder, lease, l.size)
	var granted bool
	b.Queue(t.dequeue, l.name, holder).QueryRow(func(r pgx.Row) error { return r.Scan(&granted) })
	// The batch is not cut short by ctx: a batch cancelled in flight can
	// still commit on the server after abandon's cleanup ran on another
	// connection, leaving a queue entry (and a lease) until they expire.
	// Finishing it first (bounded like a release) keeps the cleanup last.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(l.s.opts.Lease, releaseTimeout))
	defer cancel()
	if err := l.s.pool.SendBatch(bctx, b).Close(); err != nil {
		return false, err
	}
	return granted, nil
}

// abandon removes holder's queue entry and lease after a failed or
// cancelled acquire (the last attempt may have been granted without our
// seeing it). When that fails the entries expire on their own.
func (l *Limit) abandon(holder string) {
	ctx, cancel := context.WithTimeout(context.Background(), min(l.s.opts.Lease, releaseTimeout))
	defer cancel()
	if err := l.ReleaseAs(ctx, holder); err != nil {
		l.s.log.Warn("pglimit: cleanup after a cancelled acquire failed; the entries expire on their own", "limit", l.name, "holder", holder, "error", err)
	}
}

// forget drops holder from the leases this process renews.
func (l *Limit) forget(holder string) {
	l.mu.Lock()
	delete(l.held, holder)
	l.mu.Unlock()
}

// forgetGrant drops holder from the leases this process renews if its
// lease is still grant number grant, and reports whether it did.
func (l *Limit) forgetGrant(holder string, grant uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if g, ok := l.held[holder]; !ok || g != grant {
		return false
	}
	delete(l.held, holder)
	return true
}

// signal wakes this process's waiters of the limit.
func (l *Limit) signal() {
	l.mu.Lock()
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

// heldHolders returns the holders of this process with a lease.
func (l *Limit) heldHolders() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.held))
	for h := range l.held {
		out = append(out, h)
	}
	return out
}

// retry calls f until it succeeds, fails with an error that is not
// retryable, or ctx is done, backing off between calls: a pool whose
// connections were all cut (a restarted server or proxy) fails once per
// dead connection.
func (s *Store) retry(ctx context.Context, f func() error) error {
	for n := 0; ; n++ {
		err := f()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		if !backoff.Sleep(ctx, backoff.EqualJitter(backoff.Exponential(time.Millisecond, s.opts.Poll, 2, n))) {
			return err
		}
	}
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// retryable reports whether an acquire attempt that failed with err may
// be tried again with the same holder id: connection failures, and the
// server errors of a restarting or overloaded server or a conflict.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "40"),  // transaction rollback (serialization, deadlock)
			strings.HasPrefix(pe.Code, "53"),  // insufficient resources (too many connections)
			strings.HasPrefix(pe.Code, "57P"): // admin shutdown, crash shutdown, cannot connect now
			return true
		}
		return false
	}
	// Not a server error: the connection broke or could not be made.
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}
