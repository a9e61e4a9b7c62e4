package cluster

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestFanoutQueuesAndRetries(t *testing.T) {
	var gotA, gotB atomic.Int32
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(FanoutHeader) != "self" || r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("headers: %v", r.Header)
		}
		b, _ := io.ReadAll(r.Body)
		if string(b) != `{"all":true}` {
			t.Errorf("body %s", b)
		}
		gotA.Add(1)
		io.WriteString(w, `{"purged":2}`)
	}))
	defer a.Close()
	// Peer b is down at first: reserve an address, then start it later.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	bAddr := ln.Addr().String()
	ln.Close()

	f, err := NewFanout("self", []Peer{{"a", a.URL}, {"b", "http://" + bAddr}}, "tok", filepath.Join(t.TempDir(), "q.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res := f.Send(context.Background(), "/v1/purge", []byte(`{"all":true}`))
	if res["a"].Error != "" || string(res["a"].Result) != `{"purged":2}` {
		t.Errorf("a: %+v", res["a"])
	}
	if res["b"].Error == "" || !res["b"].Queued {
		t.Errorf("b: %+v, want an error and queued", res["b"])
	}
	if f.Pending() != 1 {
		t.Fatalf("pending %d", f.Pending())
	}
	// Retrying while b is still down keeps it queued.
	f.retryDue(time.Now().Add(time.Hour))
	if f.Pending() != 1 {
		t.Fatalf("pending %d after failed retry", f.Pending())
	}
	bl, err := net.Listen("tcp", bAddr)
	if err != nil {
		t.Fatal(err)
	}
	b := &httptest.Server{Listener: bl, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotB.Add(1)
		io.WriteString(w, `{"purged":1}`)
	})}}
	b.Start()
	defer b.Close()
	f.retryDue(time.Now().Add(24 * time.Hour))
	if f.Pending() != 0 || gotB.Load() != 1 || gotA.Load() != 1 {
		t.Errorf("pending %d, a got %d, b got %d", f.Pending(), gotA.Load(), gotB.Load())
	}
}
