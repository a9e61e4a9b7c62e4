package node

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// A client that starts a cache fill and then never reads its response
// used to hold the fill — and every client coalesced onto it — until
// edge.send_timeout cut it. The leader now reads its body from the file
// being written, as its followers do: the fill completes at the origin's
// pace, the follower gets the whole body, and the object is a HIT while
// the leader still has read nothing — with a short send_timeout as with
// the 60s default, which nothing in this test waits for.
func TestCacheFillNotPacedByLeader(t *testing.T) {
	for _, edge := range []string{"{listen: 127.0.0.1:0, send_timeout: 300ms}", "{listen: 127.0.0.1:0}"} {
		t.Run(edge, func(t *testing.T) { cacheFillNotPacedByLeader(t, edge) })
	}
}

func cacheFillNotPacedByLeader(t *testing.T, edge string) {
	const size = 32 << 20
	started := make(chan struct{}, 4)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		started <- struct{}{}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := make([]byte, 64<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer origin.Close()
	_, base := startNode(t, fmt.Sprintf(`node: test
data_dir: %s
edge: %s
routes:
  - name: app
    upstream: %s
    cache: {}
`, t.TempDir(), edge, origin.URL))

	leader, err := net.Dial("tcp", base[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	_ = leader.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(leader, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the leader's fill never reached the origin")
	}

	client := &http.Client{Timeout: 20 * time.Second} // far below the default 60s send_timeout
	get := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/big", nil)
		req.Host = "x" // the leader's cache key
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			t.Fatalf("got %d of %d bytes: %v (X-Cache %s)", n, size, err, resp.Header.Get("X-Cache"))
		}
		return resp
	}
	if resp := get(); len(started) != 0 {
		t.Fatalf("the follower went to the origin itself (Cache-Status %s)", resp.Header.Get("Cache-Status"))
	}
	for i := 0; ; i++ { // the index commit follows the last byte
		if resp := get(); resp.Header.Get("X-Cache") == "HIT" {
			break
		} else if i == 50 {
			t.Fatalf("not stored while the leader read nothing: X-Cache %s", resp.Header.Get("X-Cache"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// edge.max_connections caps the connections open at once: at the cap the
// listener stops accepting (the connection waits in the backlog), and a
// slot freed by a closed connection lets the next one in.
func TestMaxConnections(t *testing.T) {
	_, base := startNode(t, fmt.Sprintf(`node: test
data_dir: %s
edge:
  listen: 127.0.0.1:0
  max_connections: 4
routes:
  - name: app
    upstream: http://127.0.0.1:9
`, t.TempDir()))
	addr := base[len("http://"):]
	var held []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /_outpost/healthz HTTP/1.1\r\nHost: x\r\n") // and no end of headers
		held = append(held, c)
	}
	answered := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/_outpost/healthz")
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a fifth connection was served with 4 allowed (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	held[0].Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a freed slot did not let the waiting connection in")
	}
}
