package demo

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
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

// The JWT signing key is data (every token and session depends on it): a
// damaged file is an error naming it, not silently replaced by a new key.
func TestSigningKeyDamaged(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(path string)
		wantErr bool
	}{
		{"missing: generated", func(p string) { os.Remove(p) }, false},
		{"intact: reused", func(string) {}, false},
		{"truncated", func(p string) { os.Truncate(p, 40) }, true},
		{"empty", func(p string) { os.Truncate(p, 0) }, true},
		{"garbage", func(p string) { os.WriteFile(p, []byte("garbage"), 0o600) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d := &Demo{DataDir: dir, log: telemetry.NewLogger(io.Discard, "error", "text")}
			first, err := d.signingKey()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "jwt-ed25519.pem")
			tc.damage(path)
			before, _ := os.ReadFile(path)
			sk, err := d.signingKey()
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want an error naming %s", err, path)
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
					t.Error("the damaged key file was replaced")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "intact: reused" && !first.Equal(sk) {
				t.Error("a new key replaced an intact one")
			}
		})
	}
}
