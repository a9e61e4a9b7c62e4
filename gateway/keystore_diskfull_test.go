package gateway

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/disktest"
)

// On a full disk Create and Revoke fail with an error; every key reported
// created survives a restart, and none reported failed appears.
func TestKeyStoreDiskFull(t *testing.T) {
	dir := disktest.Tiny(t)
	path := filepath.Join(dir, "keys.db")
	ks, err := OpenKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	var failed int
	for i := 0; i < 2000 && failed < 5; i++ {
		if _, rec, err := ks.Create(KeySpec{Owner: "alice", Scopes: []string{strings.Repeat("s", 250), strings.Repeat("t", 250)}}); err != nil {
			failed++
		} else {
			made = append(made, rec.ID)
		}
	}
	if failed == 0 {
		t.Fatal("the disk never filled")
	}
	_, revokeErr := ks.Revoke(made[0])
	ks.Close()

	ks, err = OpenKeyStore(path)
	if err != nil {
		t.Fatalf("reopen after a full disk: %v", err)
	}
	defer ks.Close()
	if got := len(ks.List()); got != len(made) {
		t.Errorf("%d keys after restart, %d reported created", got, len(made))
	}
	rec, ok := ks.Get(made[0])
	if !ok {
		t.Fatal("first key lost")
	}
	if (rec.RevokedAt != nil) != (revokeErr == nil) {
		t.Errorf("revoked %v after restart, Revoke returned %v", rec.RevokedAt != nil, revokeErr)
	}
}
