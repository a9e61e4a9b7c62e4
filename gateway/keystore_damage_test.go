package gateway

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A key store that cannot be read stops the start with an error naming the
// file, and the file is left as it was: the keys are data, and an empty
// store would turn every issued key into a 401 and be written over.
func TestKeyStoreDamagedRefusesToStart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string // in the error
	}{
		{"garbage", func(t *testing.T, p string) { os.WriteFile(p, []byte(strings.Repeat("garbage ", 2000)), 0o600) }, "damaged"},
		{"truncated", func(t *testing.T, p string) {
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}, "damaged"},
		{"truncated to three pages", func(t *testing.T, p string) { os.Truncate(p, 3*4096) }, "damaged"},
		{"a directory", func(t *testing.T, p string) { os.Remove(p); os.Mkdir(p, 0o700) }, "not a regular file"},
		{"a record that is not JSON", func(t *testing.T, p string) {
			db, err := bolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error { return tx.Bucket(keysBucket).Put([]byte("bad"), []byte("{")) })
			db.Close()
		}, `key "bad"`},
		{"locked by another process", func(t *testing.T, p string) {
			db, err := bolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
		}, "locked by another process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && strings.HasPrefix(tc.name, "locked") {
				t.Skip("waits for the 5s lock timeout")
			}
			path := filepath.Join(t.TempDir(), "keys.db")
			ks, err := OpenKeyStore(path)
			if err != nil {
				t.Fatal(err)
			}
			for range 40 {
				if _, _, err := ks.Create(KeySpec{Owner: "alice", Scopes: []string{strings.Repeat("s", 100)}}); err != nil {
					t.Fatal(err)
				}
			}
			ks.Close()
			tc.damage(t, path)
			before, _ := os.ReadFile(path)

			ks, err = OpenKeyStore(path)
			if err == nil {
				ks.Close()
				t.Fatal("opened a damaged key store")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want the file name and %q", err, tc.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the damaged file was changed")
			}
		})
	}
}
