package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-edge/outpost/internal/disktest"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		path    string
		data    string
		wantErr bool
	}{
		{"create", filepath.Join(dir, "f"), "one", false},
		{"replace", filepath.Join(dir, "f"), "two", false},
		{"missing directory", filepath.Join(dir, "nope", "f"), "x", true},
		{"directory is a file", filepath.Join(dir, "f", "g"), "x", true},
	}
	for _, tc := range tests {
		err := Write(tc.path, []byte(tc.data), 0o600)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%s: Write(%s) = %v, want error %v", tc.name, tc.path, err, tc.wantErr)
		}
		if err != nil {
			continue
		}
		b, err := os.ReadFile(tc.path)
		if err != nil || string(b) != tc.data {
			t.Fatalf("%s: read back %q, %v; want %q", tc.name, b, err, tc.data)
		}
		if fi, _ := os.Stat(tc.path); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, want 0600", tc.name, fi.Mode())
		}
	}
	// No temp files are left behind, after success or failure.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %v, want only f", entries)
	}
}

// On a full disk Write fails, the old content stays and no temp file is
// left behind.
func TestWriteDiskFull(t *testing.T) {
	dir := disktest.Tiny(t)
	path := filepath.Join(dir, "records.json")
	if err := Write(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, make([]byte, 2<<20), 0o600); err == nil {
		t.Fatal("a 2 MiB write to a 1 MiB disk succeeded")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "old" {
		t.Fatalf("after the failed write: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}

// RemoveTemps removes what a crash between create and rename leaves, and
// nothing else.
func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "records.json")
	if err := Write(path, []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".records.json.tmp123", ".records.json.tmp"} {
		os.WriteFile(filepath.Join(dir, name), []byte("partial"), 0o600)
	}
	other := filepath.Join(dir, ".other.json.tmp1")
	os.WriteFile(other, nil, 0o600)
	n, err := RemoveTemps(path)
	if err != nil || n != 2 {
		t.Fatalf("RemoveTemps = %d, %v; want 2", n, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "kept" {
		t.Errorf("the file itself: %q", b)
	}
	if _, err := os.Stat(other); err != nil {
		t.Error("another file's temp removed")
	}
	if n, err := RemoveTemps(filepath.Join(dir, "missing-dir", "x")); n != 0 || err == nil {
		t.Errorf("missing directory: %d, %v", n, err)
	}
}
