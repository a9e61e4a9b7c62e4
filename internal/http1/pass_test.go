package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// testPasser takes targets under /lane/. /lane/slow, as the lane does
// for a slow backend, watches its client, then waits for release or for
// its connection's context to end, and tells ended why.
type testPasser struct {
	started chan struct{}
	release chan struct{}
	ended   chan error
}

func (tp *testPasser) Takes(host, target string, peer netip.Addr) any {
	if strings.HasPrefix(target, "/lane/") {
		return tp
	}
	return nil
}

func (tp *testPasser) Pass(w http.ResponseWriter, p *Pass, token any) bool {
	if p.Target == "/lane/slow" {
		p.Watch()
		tp.started <- struct{}{}
		select {
		case <-tp.release:
		case <-p.Conn.Done():
			tp.ended <- context.Cause(p.Conn)
			return true
		case <-time.After(20 * time.Second):
			tp.ended <- errors.New("not canceled")
			return true
		}
	}
	if p.Target == "/lane/fields" {
		io.WriteString(w, strings.Join(slices.Sorted(maps.Keys(p.Header)), ","))
		return true
	}
	if p.Target == "/lane/mark" {
		w.Header().Set("X-Mark", "1")
	}
	io.WriteString(w, p.Target)
	return true
}

func passServer(t *testing.T, headerTimeout time.Duration) (*testPasser, string) {
	return passServerWith(t, headerTimeout, http.NotFoundHandler())
}

func passServerWith(t *testing.T, headerTimeout time.Duration, h http.Handler) (*testPasser, string) {
	t.Helper()
	tp := &testPasser{started: make(chan struct{}, 2), release: make(chan struct{}), ended: make(chan error, 1)}
	s := New(&http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, ErrorLog: discardLog()})
	s.Passer = tp
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return tp, ln.Addr().String()
}

// A client that hangs up while a pass-lane request waits ends the
// connection's context the lane hangs its backend request off, as the
// handler's request context ends — also once the header timeout, under
// which the head was read, has passed.
func TestPassClientGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		wait time.Duration // before the client hangs up
	}{{"at once", 0}, {"after the header timeout", 3 * watchDelay}} {
		t.Run(tc.name, func(t *testing.T) {
			tp, addr := passServer(t, watchDelay)
			c := dialServer(t, addr)
			io.WriteString(c, "GET /lane/slow HTTP/1.1\r\nHost: a\r\n\r\n")
			<-tp.started
			time.Sleep(tc.wait)
			c.Close()
			if err := <-tp.ended; !errors.Is(err, errClientGone) {
				t.Fatalf("cause %v, want client gone", err)
			}
		})
	}
}

// Pipelined requests on the lane — sent with the first, or while the
// watch reads — are no hang-up: both are answered, in order.
func TestPassPipelined(t *testing.T) {
	for _, tc := range []struct {
		name  string
		apart bool // the second request comes once the watch reads
	}{{"together", false}, {"while watched", true}} {
		t.Run(tc.name, func(t *testing.T) {
			tp, addr := passServer(t, 5*time.Second)
			c := dialServer(t, addr)
			first, second := "GET /lane/slow HTTP/1.1\r\nHost: a\r\n\r\n", "GET /lane/next HTTP/1.1\r\nHost: a\r\n\r\n"
			if tc.apart {
				io.WriteString(c, first)
				<-tp.started
				time.Sleep(2 * watchDelay) // let the watch start reading
				io.WriteString(c, second)
				time.Sleep(watchDelay)
			} else {
				io.WriteString(c, first+second)
				<-tp.started
				time.Sleep(2 * watchDelay)
			}
			close(tp.release)
			expectBodies(t, c, "/lane/slow", "/lane/next")
			select {
			case err := <-tp.ended:
				t.Fatalf("the lane request ended: %v", err)
			default:
			}
		})
	}
}

// The lane's response writer and header map are reused from one request
// to the next on a connection: nothing of one response shows in the next.
func TestPassReusedWriter(t *testing.T) {
	_, addr := passServer(t, 5*time.Second)
	c := dialServer(t, addr)
	br := bufio.NewReader(c)
	for i, target := range []string{"/lane/mark", "/lane/plain", "/lane/mark", "/lane/plain"} {
		io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		marked := resp.Header.Get("X-Mark") != ""
		if string(b) != target || marked != (target == "/lane/mark") {
			t.Fatalf("request %d (%s): body %q, X-Mark %q", i, target, b, resp.Header.Get("X-Mark"))
		}
	}
}

// A lane request's fields map is reused for the connection's next
// request: the lane sees only its own request's fields, and a handler
// keeps the map of the request it was given.
func TestPassReusedFields(t *testing.T) {
	kept := make(chan http.Header, 1)
	_, addr := passServerWith(t, 5*time.Second, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kept <- r.Header
		io.WriteString(w, "chain")
	}))
	c := dialServer(t, addr)
	br := bufio.NewReader(c)
	for i, tc := range []struct{ target, fields, want string }{
		{"/lane/fields", "X-A: 1\r\nX-B: 2\r\n", "X-A,X-B"},
		{"/lane/fields", "X-C: 3\r\n", "X-C"},
		{"/chain", "X-Kept: yes\r\n", "chain"},
		{"/lane/fields", "X-D: 4\r\n", "X-D"},
		{"/lane/fields", "", ""},
	} {
		io.WriteString(c, "GET "+tc.target+" HTTP/1.1\r\nHost: a\r\n"+tc.fields+"\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != tc.want {
			t.Fatalf("request %d (%s): %q, want %q", i, tc.target, b, tc.want)
		}
	}
	if h := <-kept; h.Get("X-Kept") != "yes" || len(h) != 1 {
		t.Fatalf("the handler's fields changed after it returned: %v", h)
	}
}

func TestPeerAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1:5000", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"}, // mapped: unmapped
		{"pipe", "invalid IP"},
		{"", "invalid IP"},
	} {
		if got := PeerAddr(tc.in).String(); got != tc.want {
			t.Errorf("PeerAddr(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// The handlers' response header map is reused for the connection's next
// handler response (as the lane's is): cleared, so that no field of one
// response reaches the next, on a kept-alive connection or pipelined.
func TestReusedResponseHeader(t *testing.T) {
	_, fast, _ := servers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mark" {
			w.Header().Set("X-Mark", "1")
			w.Header()["Set-Cookie"] = []string{"a=1", "b=2"}
		}
		io.WriteString(w, r.URL.Path)
	}), nil)
	targets := []string{"/mark", "/plain", "/mark", "/plain", "/plain"}
	var raw strings.Builder
	for _, target := range targets {
		raw.WriteString("GET " + target + " HTTP/1.1\r\nHost: a\r\n\r\n")
	}
	resps, bodies, _ := exchange(t, fast, raw.String(), len(targets))
	if len(resps) != len(targets) {
		t.Fatalf("%d responses, want %d", len(resps), len(targets))
	}
	for i, target := range targets {
		marked := resps[i].Header.Get("X-Mark") != "" || len(resps[i].Header["Set-Cookie"]) > 0
		if bodies[i] != target || marked != (target == "/mark") {
			t.Errorf("response %d (%s): body %q, header %v", i, target, bodies[i], resps[i].Header)
		}
	}
}
