// Package telemetry builds the process's logger and metrics registry.
package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewLogger returns a slog logger writing level and above to w as JSON or
// text.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: parseLevel(level)}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func parseLevel(level string) slog.Level {
	switch strings.ToLower(level) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// NewLogs returns the process log and the access log (component=access),
// both level and above in format, on out: the process log's lines and the
// access log's warnings and errors at once, its request lines gathered.
func NewLogs(out *Output, level, format string) (log, access *slog.Logger) {
	log = NewLogger(out.Direct(), level, format)
	var gathered slog.Handler = newJSONLines(out.Access(), &slog.HandlerOptions{Level: parseLevel(level)})
	if format == "text" {
		gathered = NewLogger(out.Access(), level, format).Handler()
	}
	access = slog.New(splitHandler{info: gathered, warn: log.Handler()}).With("component", "access")
	return log, access
}

// splitHandler hands records below warn to info, the rest to warn.
type splitHandler struct{ info, warn slog.Handler }

func (h splitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.info.Enabled(ctx, l)
}

func (h splitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		return h.warn.Handle(ctx, r)
	}
	return h.info.Handle(ctx, r)
}

func (h splitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return splitHandler{info: h.info.WithAttrs(as), warn: h.warn.WithAttrs(as)}
}

func (h splitHandler) WithGroup(name string) slog.Handler {
	return splitHandler{info: h.info.WithGroup(name), warn: h.warn.WithGroup(name)}
}

// PrintfLogger adapts log to libraries that log with Printf (go-redis's
// SetLogger), so their lines keep the process log's format instead of
// writing their own to stderr. They go out at debug level: what such a
// library reports (a failed dial, a dropped connection) reaches its
// caller as an error too, which logs and counts it as its policy says;
// at debug they are there for a deeper look without a line per retry.
func PrintfLogger(log *slog.Logger) PrintfLog { return PrintfLog{log} }

// PrintfLog is PrintfLogger's adapter.
type PrintfLog struct{ log *slog.Logger }

// Printf logs the formatted message at debug level.
func (p PrintfLog) Printf(ctx context.Context, format string, v ...any) {
	if !p.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	p.log.DebugContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}
