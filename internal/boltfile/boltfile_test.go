package boltfile

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// filled writes a database of a few hundred records over several pages.
func filled(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for i := range 500 {
			k := binary.BigEndian.AppendUint64(nil, uint64(i))
			if err := b.Put(k, []byte(strings.Repeat("v", 200))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

func readAll(tx *bolt.Tx) error {
	b := tx.Bucket([]byte("b"))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return nil })
}

func TestOpenBrokenFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   error // nil: opens and loads
	}{
		{"intact", func(*testing.T, string) {}, nil},
		{"zero length", func(t *testing.T, p string) { os.Truncate(p, 0) }, nil},
		{"garbage", func(t *testing.T, p string) {
			os.WriteFile(p, []byte(strings.Repeat("not a database ", 1000)), 0o600)
		}, ErrDamaged},
		{"truncated to half", func(t *testing.T, p string) {
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}, ErrDamaged},
		{"truncated to three pages", func(t *testing.T, p string) { os.Truncate(p, 3*4096) }, ErrDamaged},
		{"truncated in the meta page", func(t *testing.T, p string) { os.Truncate(p, 100) }, ErrDamaged},
		{"a directory", func(t *testing.T, p string) { os.Remove(p); os.Mkdir(p, 0o700) }, ErrDamaged},
		{"locked", func(t *testing.T, p string) {
			db, err := bolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
		}, ErrLocked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			filled(t, path)
			tc.damage(t, path)
			db, err := Open(path, 200*time.Millisecond)
			if err == nil {
				err = Update(db, path, readAll)
				db.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}
