package cdn

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "body")
	if err := os.WriteFile(p, []byte("stored body"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := openFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil || string(b) != "stored body" {
		t.Fatalf("read %q, %v", b, err)
	}
	if _, err := f.Seek(7, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(f); string(b) != "body" {
		t.Fatalf("after seek: %q", b)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Callers tell "evicted or purged meanwhile" from other errors.
	if _, err := openFile(filepath.Join(dir, "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
}
