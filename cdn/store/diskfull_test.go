package store

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/disktest"
)

// A really full disk (bodies and the bbolt index both fail to grow): every
// write fails with an error, nothing panics, and after a restart each
// entry reported committed is there whole; none reported failed is.
func TestRealDiskFull(t *testing.T) {
	dir := disktest.Tiny(t)
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("b", 3000)
	var ok []string
	failed := 0
	for i := 0; failed < 20 && i < 5000; i++ {
		key := fmt.Sprintf("http://a/%d", i)
		w, err := s.Create()
		if err != nil {
			failed++
			continue
		}
		w.Write([]byte(body))
		if _, err := w.Commit(Meta{Key: key, Status: 200}); err != nil {
			failed++
			continue
		}
		ok = append(ok, key)
	}
	if failed == 0 {
		t.Fatal("the disk never filled")
	}
	s.Close()

	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("reopen after a full disk: %v", err)
	}
	defer s.Close()
	if int(s.Objects()) != len(ok) {
		t.Errorf("%d entries after restart, %d committed", s.Objects(), len(ok))
	}
	for _, k := range ok {
		e := s.Lookup(k, nil)
		if e == nil {
			t.Fatalf("%s lost", k)
		}
		if b, err := os.ReadFile(e.Path()); err != nil || string(b) != body {
			t.Fatalf("%s: %d bytes, %v", k, len(b), err)
		}
	}
}
