package tlsedge

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestZapBridge(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	z := newZapLogger(log).Named("certmagic").With(zap.String("identifier", "demo.test"))
	z.Debug("hidden")
	z.Warn("renewal failed", zap.Error(errors.New("boom")), zap.Int("attempt", 2))
	out := buf.String()
	for _, want := range []string{"level=WARN", `msg="renewal failed"`, "identifier=demo.test", "error=boom", "attempt=2", "logger=certmagic"} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Errorf("debug entry written at info level: %q", out)
	}
}
