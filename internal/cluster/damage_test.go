package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A queue file that cannot be read stops the start with an error naming
// the file and saying what moving it aside loses; the file is left as it
// was (it holds purges the peers have not applied).
func TestFanoutQueueDamaged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(path string)
	}{
		{"garbage", func(p string) { os.WriteFile(p, []byte(strings.Repeat("garbage ", 2000)), 0o600) }},
		{"truncated to three pages", func(p string) { os.Truncate(p, 3*4096) }},
		{"a directory", func(p string) { os.Remove(p); os.Mkdir(p, 0o700) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fanout.db")
			addr := downAddr(t)
			f := newTestFanout(t, path, Peer{"b", "http://" + addr})
			for i := range 60 {
				f.Send(context.Background(), "/v1/purge", fmt.Appendf(nil, `{"tags":["%s%d"]}`, strings.Repeat("t", 200), i))
			}
			f.Close()
			tc.damage(path)
			before, _ := os.ReadFile(path)

			f, err := NewFanout("a", []Peer{{"b", "http://" + addr}}, "tok", path, slog.New(slog.DiscardHandler))
			if err == nil {
				f.Close()
				t.Fatal("opened a damaged queue")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move it aside") {
				t.Errorf("error %q: want the file and how to recover", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the damaged file was changed")
			}
		})
	}
}

// A queue record that does not decode cannot be delivered: it is dropped
// so it does not block the peer's queue, with an error line saying so.
func TestFanoutUnreadableRecordLogged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fanout.db")
	addr := downAddr(t)
	var logs bytes.Buffer
	f, err := NewFanout("a", []Peer{{"b", "http://" + addr}}, "tok", path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Send(context.Background(), "/v1/purge", []byte(`{"tags":["good"]}`))
	if err := f.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(queueBucket).Put(queueKey("b", 0), []byte("{damaged"))
	}); err != nil {
		t.Fatal(err)
	}
	rc := &recorder{}
	startAt(t, addr, rc)
	f.retryDue(time.Now().Add(time.Hour))
	if got := strings.Join(rc.got(), " "); got != `{"tags":["good"]}` {
		t.Errorf("delivered %q", got)
	}
	if !strings.Contains(logs.String(), "unreadable") || !strings.Contains(logs.String(), path) {
		t.Errorf("no error line naming the file:\n%s", logs.String())
	}
}
