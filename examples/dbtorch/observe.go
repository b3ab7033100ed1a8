package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/otelobserver"
)

// observeFlags are build's observability options: --log-format, and
// OpenTelemetry export configured by the standard OTEL_* environment
// variables (no flag: OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT turns it on).
type observeFlags struct {
	logFormat string
}

func addObserveFlags(fs *flag.FlagSet) *observeFlags {
	f := &observeFlags{}
	fs.StringVar(&f.logFormat, "log-format", "text", "stderr log format: text, or json (one JSON object per line, every build event included, with the OpenTelemetry span attribute names)")
	return f
}

// otlpShutdownTimeout bounds how long a build waits at the end to deliver
// its trace to an unreachable collector.
const otlpShutdownTimeout = 10 * time.Second

// setup returns the logger for the build's warnings, the observer to add
// to the build's (nil when none), and a function to call once the build
// and its reporters are done: it flushes the trace export. The error is
// bad input (an unknown --log-format, a malformed OTEL_* variable).
func (f *observeFlags) setup(ctx context.Context, stderr io.Writer, getenv func(string) string) (*slog.Logger, orchestrator.Observer, func(), error) {
	var obs orchestrator.Observers
	var logger *slog.Logger
	switch f.logFormat {
	case "text", "":
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		obs = append(obs, otelobserver.NewLogObserver(slog.NewJSONHandler(stderr, nil)))
	default:
		return nil, nil, nil, fmt.Errorf("--log-format: unknown format %q (want text or json)", f.logFormat)
	}
	done := func() {}
	if otelobserver.OTLPConfigured(getenv) {
		tp, err := otelobserver.NewOTLPTracerProvider(ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		obs = append(obs, otelobserver.New(tp))
		done = func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), otlpShutdownTimeout)
			defer cancel()
			if err := tp.Shutdown(sctx); err != nil {
				fmt.Fprintf(stderr, "dbtorch build: OpenTelemetry export: %v\n", err)
			}
		}
	}
	if len(obs) == 0 {
		return logger, nil, done, nil
	}
	return logger, obs, done, nil
}

// withObserver adds extra (if any) to the build's observer.
func withObserver(cfg *orchestrator.Config, extra orchestrator.Observer) {
	switch {
	case extra == nil:
	case cfg.Observer == nil:
		cfg.Observer = extra
	default:
		cfg.Observer = orchestrator.Observers{cfg.Observer, extra}
	}
}

// notice tells the user something about the build as it starts: a line
// on stderr, or a warning record with --log-format json (whose stderr is
// JSON only).
func (f *observeFlags) notice(stderr io.Writer, logger *slog.Logger, cmd, msg string) {
	if f.logFormat == "json" {
		logger.Warn(msg)
		return
	}
	fmt.Fprintf(stderr, "dbtorch %s: %s\n", cmd, msg)
}
