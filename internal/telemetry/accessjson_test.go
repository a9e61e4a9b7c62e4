package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the handlers' concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// same writes r through jsonLines and through slog's JSONHandler, both
// after with (WithAttrs), and fails unless the bytes are equal.
func same(t *testing.T, with []slog.Attr, r slog.Record) {
	t.Helper()
	var fast, std lockedBuffer
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	var hf slog.Handler = newJSONLines(&fast, opts)
	var hs slog.Handler = slog.NewJSONHandler(&std, opts)
	if with != nil {
		hf, hs = hf.WithAttrs(with), hs.WithAttrs(with)
	}
	if err := hf.Handle(context.Background(), r.Clone()); err != nil {
		t.Fatalf("jsonLines: %v", err)
	}
	hs.Handle(context.Background(), r.Clone())
	if got, want := fast.b.String(), std.b.String(); got != want {
		t.Fatalf("jsonLines wrote\n%s\nslog's handler\n%s", got, want)
	}
}

var when = time.Date(2026, 12, 5, 19, 30, 1, 123456789, time.UTC)

func TestJSONLinesAsSlog(t *testing.T) {
	type lv = slog.LogValuer
	cases := []struct {
		name  string
		with  []slog.Attr
		time  time.Time
		level slog.Level
		msg   string
		attrs []slog.Attr
	}{
		{"an access line", []slog.Attr{slog.String("component", "access")}, when, slog.LevelInfo, "request", []slog.Attr{
			slog.String("node", "fra1"), slog.String("route", "api"), slog.String("method", "GET"),
			slog.String("host", "www.example.com"), slog.String("path", "/a/b.css"), slog.Int("status", 200),
			slog.Int64("bytes", 1024), slog.Float64("duration_ms", 0.412), slog.String("client", "192.0.2.1"),
			slog.String("request_id", "5f0c2a"), slog.String("cache", "HIT"),
		}},
		{"escapes", nil, when, slog.LevelInfo, "m\"s\\g\n\t\r\x01\x7f<>&", []slog.Attr{
			slog.String("k\"ey", "v\u2028a\u2029l\xffue é 😀"), slog.String("ctl", "\x00\x1f"),
		}},
		{"no time, other levels", nil, time.Time{}, slog.LevelWarn + 2, "", []slog.Attr{slog.Bool("b", true), slog.Uint64("u", math.MaxUint64), slog.Int("neg", -7)}},
		{"floats", nil, when, slog.LevelDebug, "f", []slog.Attr{
			slog.Float64("zero", 0), slog.Float64("neg", -1.5), slog.Float64("edge", 1e-6), slog.Float64("big", 1e20),
			slog.Float64("third", 1.0/3), slog.Float64("ms", 12.345),
		}},
		{"floats json.Marshal writes with an exponent", nil, when, slog.LevelInfo, "f", []slog.Attr{slog.Float64("tiny", 1e-7), slog.Float64("huge", 1e21)}},
		{"non-finite float", nil, when, slog.LevelInfo, "f", []slog.Attr{slog.Float64("nan", math.NaN()), slog.Float64("inf", math.Inf(1))}},
		{"kinds slog writes itself", nil, when, slog.LevelInfo, "k", []slog.Attr{
			slog.Duration("d", 1500*time.Millisecond), slog.Time("t", when), slog.Any("err", errors.New("boom")),
			slog.Any("list", []int{1, 2}), slog.Group("g", slog.String("a", "b")), slog.Any("v", lv(nil)),
		}},
		{"empty key and empty group", nil, when, slog.LevelInfo, "e", []slog.Attr{
			{}, slog.String("", "x"), slog.Group("", slog.Int("inl", 1)), slog.Group("none"),
		}},
		{"attributes from With that slog writes itself", []slog.Attr{slog.Duration("up", time.Second)}, when, slog.LevelInfo, "w", []slog.Attr{slog.Int("n", 1)}},
		{"year out of range", nil, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "y", nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := slog.NewRecord(tc.time, tc.level, tc.msg, 0)
			r.AddAttrs(tc.attrs...)
			same(t, tc.with, r)
			// The first four are written by jsonLines itself, or the
			// comparison would prove nothing of it.
			_, own := appendAttrs(nil, append(append([]slog.Attr(nil), tc.with...), tc.attrs...))
			if i < 4 && !own {
				t.Error("jsonLines handed these attributes to slog's handler")
			}
		})
	}
}

// WithGroup: the logger from there on is slog's handler.
func TestJSONLinesWithGroup(t *testing.T) {
	var fast, std lockedBuffer
	slog.New(newJSONLines(&fast, nil)).With("c", "x").WithGroup("g").Info("m", "k", 1)
	slog.New(slog.NewJSONHandler(&std, nil)).With("c", "x").WithGroup("g").Info("m", "k", 1)
	const tail = `"level":"INFO","msg":"m","c":"x","g":{"k":1}}` + "\n"
	if !bytes.HasSuffix(fast.b.Bytes(), []byte(tail)) || !bytes.HasSuffix(std.b.Bytes(), []byte(tail)) {
		t.Fatalf("jsonLines %s\nslog %s", fast.b.String(), std.b.String())
	}
}

func FuzzJSONLines(f *testing.F) {
	f.Add("path", "/a?b=c", int64(200), 1.25, true, "request")
	f.Add("k\"", "\xff\u2028\x00", int64(-1), 1e-7, false, "\n")
	f.Fuzz(func(t *testing.T, key, s string, i int64, fl float64, b bool, msg string) {
		r := slog.NewRecord(when, slog.LevelInfo, msg, 0)
		r.AddAttrs(slog.String(key, s), slog.Int64("i", i), slog.Float64("f", fl), slog.Bool("b", b), slog.String("s2", s+key))
		same(t, []slog.Attr{slog.String(key, s)}, r)
	})
}
