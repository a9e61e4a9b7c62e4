package demo

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-edge/outpost/configs"
	"github.com/outpost-edge/outpost/internal/telemetry"
)

// TestWriteFilesKeepsAnEditedCopy: a start restores the built-in demo.yaml
// (the demo's ports are a contract) but never silently drops an edit made
// for POST /v1/reload.
func TestWriteFilesKeepsAnEditedCopy(t *testing.T) {
	builtin, err := configs.FS.ReadFile("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	edited := append(append([]byte(nil), builtin...), "# my edit\n"...)
	for _, tc := range []struct {
		name    string
		before  []byte // nil: no file yet
		wantBak []byte // nil: no .bak
	}{
		{"fresh directory", nil, nil},
		{"unchanged copy", builtin, nil},
		{"edited copy", edited, edited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "demo.yaml")
			if tc.before != nil {
				if err := os.WriteFile(path, tc.before, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			d := &Demo{DataDir: dir, log: telemetry.NewLogger(io.Discard, "error", "text")}
			if err := d.writeFiles(); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); string(got) != string(builtin) {
				t.Error("demo.yaml is not the built-in config")
			}
			bak, err := os.ReadFile(path + ".bak")
			if tc.wantBak == nil && !os.IsNotExist(err) {
				t.Errorf("unexpected .bak (err %v)", err)
			}
			if tc.wantBak != nil && string(bak) != string(tc.wantBak) {
				t.Errorf(".bak = %q (err %v), want the edited copy", bak, err)
			}
		})
	}
}
