package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-edge/outpost/internal/boltfile"
)

// A damaged index costs the cache its contents, not the node its start:
// the file is moved aside, the store starts empty and the bodies it named
// are removed.
func TestDamagedIndexStartsEmpty(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(path string)
		aside  bool // index.db.damaged expected
	}{
		{"zero length", func(p string) { os.Truncate(p, 0) }, false},
		{"garbage", func(p string) { os.WriteFile(p, []byte(strings.Repeat("garbage ", 2000)), 0o600) }, true},
		{"truncated", func(p string) {
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}, true},
		{"truncated to three pages", func(p string) { os.Truncate(p, 3*4096) }, true},
		{"a directory", func(p string) { os.Remove(p); os.Mkdir(p, 0o700) }, true},
		{"another program's database", func(p string) {
			os.Remove(p)
			db, _ := bolt.Open(p, 0o600, nil)
			db.Update(func(tx *bolt.Tx) error {
				b, _ := tx.CreateBucket([]byte("other"))
				return b.Put([]byte("k"), []byte("v"))
			})
			db.Close()
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openPlain(t, dir)
			var bodies []string
			for i := range 120 {
				bodies = append(bodies, put(t, s, "http://a/"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), "body").Path())
			}
			s.Close()
			tc.damage(filepath.Join(dir, "index.db"))

			s2, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s2.Close()
			if s2.Objects() != 0 {
				t.Errorf("objects = %d, want 0", s2.Objects())
			}
			for _, b := range bodies {
				if _, err := os.Stat(b); !os.IsNotExist(err) {
					t.Fatalf("body %s kept without a record", b)
				}
			}
			_, err = os.Stat(filepath.Join(dir, "index.db.damaged"))
			if got := err == nil; got != tc.aside {
				t.Errorf("index.db.damaged exists = %v, want %v", got, tc.aside)
			}
			// The new index works.
			put(t, s2, "http://a/new", "new")
			if s2.Lookup("http://a/new", nil) == nil {
				t.Error("new entry not found")
			}
		})
	}
}

// An index held by another process is not damage: Open fails, naming the
// file, and leaves it alone.
func TestLockedIndexNamesFile(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 5s lock timeout")
	}
	dir := t.TempDir()
	s := openPlain(t, dir)
	put(t, s, "http://a/x", "x")
	defer s.Close()
	_, err := Open(Options{Dir: dir})
	if !errors.Is(err, boltfile.ErrLocked) || !strings.Contains(err.Error(), filepath.Join(dir, "index.db")) {
		t.Fatalf("err = %v, want ErrLocked naming index.db", err)
	}
	if s.Lookup("http://a/x", nil) == nil {
		t.Error("entry lost")
	}
}

func openPlain(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, MaxSize: 1 << 20, MaxObjects: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Open drops a record whose body was replaced with a symlink, even to a
// file of the right size, and never touches the file it points to.
func TestReconcileDropsSymlinkedBody(t *testing.T) {
	dir := t.TempDir()
	s := openPlain(t, dir)
	e := put(t, s, "http://a/x", "body")
	s.Close()
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("SECR"), 0o600)
	os.Remove(e.Path())
	if err := os.Symlink(outside, e.Path()); err != nil {
		t.Fatal(err)
	}
	s2 := openT(t, dir, nil)
	if s2.Lookup("http://a/x", nil) != nil {
		t.Error("record with a symlinked body kept")
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "SECR" {
		t.Errorf("symlink target touched: %q, %v", b, err)
	}
}
