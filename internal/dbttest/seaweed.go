package dbttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dbtorch/dbtorch/internal/proc"
)

// WeedModule and WeedVersion are the SeaweedFS Go module (Apache-2.0)
// whose `weed` command the harness builds and runs as an S3-compatible
// server on loopback.
const (
	WeedModule  = "github.com/seaweedfs/seaweedfs"
	WeedVersion = "v0.0.0-20261109003541-7506e5f91cd6"
)

// S3 is a running S3-compatible server started by StartSeaweed, with one
// bucket and one access key.
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string
}

// URL returns the gocloud.dev/blob URL of prefix in the bucket:
// s3://bucket/prefix?endpoint=...&region=...&use_path_style=true.
func (s *S3) URL(prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&use_path_style=true", s.Bucket, prefix, s.Endpoint, s.Region)
}

// Env returns the AWS variables a client of the server needs (the access
// key, and no shared config or metadata lookups).
func (s *S3) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey, "AWS_REGION=" + s.Region,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
}

var weedOnce struct {
	sync.Mutex
	path string
}

// Weed returns the path of the `weed` binary: $DBTORCH_WEED when set,
// else $HOME/.cache/dbtorch/weed-<WeedVersion>/weed, built there on first
// use from the module with the Go toolchain (go mod download, then go build
// in the module's directory, whose replace directives `go install pkg@v`
// refuses). The first build downloads the module's dependencies and
// compiles them: about 7 minutes on a loaded 2-core machine; later runs
// reuse the binary. The test is skipped, saying why, when it cannot be
// built.
func Weed(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("DBTORCH_WEED"); p != "" {
		return p
	}
	weedOnce.Lock()
	defer weedOnce.Unlock()
	if weedOnce.path != "" {
		return weedOnce.path
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skipf("no home directory for the weed binary: %v", err)
	}
	bin := filepath.Join(home, ".cache", "dbtorch", "weed-"+WeedVersion, "weed")
	if _, err := os.Stat(bin); err == nil {
		weedOnce.path = bin
		return bin
	}
	t.Logf("building SeaweedFS %s into %s (minutes, once)", WeedVersion, bin)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Skipf("weed binary directory: %v", err)
	}
	start := time.Now()
	out, err := exec.Command("go", "mod", "download", "-json", WeedModule+"@"+WeedVersion).Output()
	if err != nil {
		t.Skipf("SeaweedFS module not downloadable: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Skipf("go mod download: no module directory (%v)", err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "./weed")
	cmd.Dir = mod.Dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("building weed failed: %v\n%s", err, lastLines(out, 20))
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatalf("weed: %v", err)
	}
	t.Logf("built weed in %s", time.Since(start).Round(time.Second))
	weedOnce.path = bin
	return bin
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePorts returns n TCP ports free on loopback now, each with port+10000
// free too (weed's gRPC ports).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port > 55000 {
			l.Close()
			continue
		}
		g, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			l.Close()
			continue
		}
		held = append(held, l, g)
		out = append(out, port)
	}
	return out
}

// StartSeaweed starts `weed mini` (master, volume, filer and S3 gateway in
// one process) on loopback with its data in a temporary directory, creates
// a bucket and an access key, waits until the S3 API answers, and stops
// the server (and waits for it) when the test ends.
func StartSeaweed(t testing.TB) *S3 {
	t.Helper()
	bin := Weed(t)
	ports := freePorts(t, 5)
	master, volume, filer, s3, admin := ports[0], ports[1], ports[2], ports[3], ports[4]
	s := &S3{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", s3), Bucket: "dbtorch", AccessKey: "dbtorch", SecretKey: "dbtorch-secret", Region: "us-east-1"}
	dir := t.TempDir()
	p := func(name string, port int) string { return fmt.Sprintf("-%s=%d", name, port) }
	args := []string{"mini", "-dir=" + dir, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		p("master.port", master), p("master.port.grpc", master+10000),
		p("volume.port", volume), p("volume.port.grpc", volume+10000),
		p("filer.port", filer), p("filer.port.grpc", filer+10000),
		p("s3.port", s3), p("s3.port.grpc", s3+10000), "-s3.port.iceberg=0", "-s3.port.lance=0",
		p("admin.port", admin), p("admin.port.grpc", admin+10000), "-admin.port.legacy=0", "-admin.ui=false",
		"-webdav=false", "-master.telemetry=false", "-bucket=" + s.Bucket}
	env := append(os.Environ(), "AWS_ACCESS_KEY_ID="+s.AccessKey, "AWS_SECRET_ACCESS_KEY="+s.SecretKey)
	pr, err := proc.Start(proc.Spec{Path: bin, Args: args, Dir: dir, Env: env})
	if err != nil {
		t.Fatalf("start weed: %v", err)
	}
	t.Cleanup(func() { pr.Stop(5 * time.Second) })
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-pr.Done():
			t.Fatalf("weed exited: %s\n%s", pr.Wait().Describe("weed"), pr.Tail(30))
		default:
		}
		resp, err := http.Get(s.Endpoint + "/" + s.Bucket + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 && resp.StatusCode != http.StatusNotFound {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("weed's S3 API did not answer within 90s\n%s", pr.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
