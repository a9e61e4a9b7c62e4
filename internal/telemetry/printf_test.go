package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

// A library's Printf lines come out as the process log's JSON, at debug
// level, and not at all above it.
func TestPrintfLogger(t *testing.T) {
	for _, level := range []string{"debug", "info"} {
		var buf bytes.Buffer
		p := PrintfLogger(NewLogger(&buf, level, "json").With("component", "redis"))
		p.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %s\n", 5, "refused")
		if level == "info" {
			if buf.Len() != 0 {
				t.Errorf("at info: %q", buf.String())
			}
			continue
		}
		var line map[string]any
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatalf("not one JSON line: %q", buf.String())
		}
		if line["level"] != slog.LevelDebug.String() || line["component"] != "redis" ||
			line["msg"] != "redis: connection pool: failed to dial after 5 attempts: refused" {
			t.Errorf("line %v", line)
		}
	}
}
