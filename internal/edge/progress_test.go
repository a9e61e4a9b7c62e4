package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outpost-edge/outpost/internal/units"
)

// guardServer serves h through NewServer with short progress timeouts,
// over plain HTTP/1.1 or (tls) HTTPS with HTTP/2.
func guardServer(t *testing.T, h http.Handler, tls bool) *httptest.Server {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0", SendTimeout: units.Duration(300 * time.Millisecond),
		ClientBodyTimeout: units.Duration(300 * time.Millisecond)}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewServer(&cfg, h, nil)
	if fastFront && !tls {
		startFast(t, ts)
		return ts
	}
	if tls {
		ts.EnableHTTP2 = true
		if fastH2 {
			useFastH2(t, ts)
		}
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	return ts
}

// handlerDone reports how a handler ended.
func waitHandler(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: handler still blocked 15s after its client stalled (send_timeout/client_body_timeout 300ms)", what)
		return nil
	}
}

// stalledClient sends req on a raw connection with a small receive buffer
// and then neither sends nor reads anything more.
func stalledClient(t *testing.T, ts *httptest.Server, req string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c
}

// writeUntilError writes up to 256MiB and reports the first write error.
func writeUntilError(done chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 64<<10)
		for range 4096 {
			if _, err := w.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	})
}

// A client that sends a request and never reads the response no longer
// holds the handler (and what it holds: an origin, a cache fill) forever.
func TestSendTimeoutReleasesStalledReader(t *testing.T) {
	t.Run("http1", func(t *testing.T) {
		done := make(chan error, 1)
		ts := guardServer(t, writeUntilError(done), false)
		stalledClient(t, ts, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if err := waitHandler(t, done, "http1"); err == nil {
			t.Fatal("256MiB written to a client that reads nothing")
		}
	})
	t.Run("http1 sendfile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "big")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		_ = f.Truncate(256 << 20) // sparse
		f.Close()
		done := make(chan error, 1)
		ts := guardServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			f, err := os.Open(path)
			if err != nil {
				done <- err
				return
			}
			defer f.Close()
			w.Header().Set("Content-Length", "268435456")
			_, err = io.Copy(w, f) // ReadFrom: the sendfile path
			done <- err
		}), false)
		stalledClient(t, ts, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if err := waitHandler(t, done, "sendfile"); err == nil {
			t.Fatal("256MiB sent to a client that reads nothing")
		}
	})
	t.Run("http2", func(t *testing.T) {
		done := make(chan error, 1)
		ts := guardServer(t, writeUntilError(done), true)
		resp, err := ts.Client().Get(ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("proto %s", resp.Proto)
		}
		// The body is never read: the stream's flow-control window closes.
		if err := waitHandler(t, done, "http2"); err == nil {
			t.Fatal("256MiB written to a stream whose client reads nothing")
		}
		// The connection and server still answer.
		r2, err := ts.Client().Get(ts.URL + "/again")
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		<-done
	})
}

// A request body trickled then stopped is cut after client_body_timeout.
func TestClientBodyTimeoutReleasesStalledUpload(t *testing.T) {
	t.Run("http1", func(t *testing.T) {
		done := make(chan error, 1)
		ts := guardServer(t, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			_, err := io.ReadAll(r.Body)
			done <- err
		}), false)
		c := stalledClient(t, ts, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
		if err := waitHandler(t, done, "http1"); err == nil {
			t.Fatal("read a body that never arrived")
		}
		// The connection is closed.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection still open 5s after the body timed out")
		}
	})
	t.Run("http2", func(t *testing.T) {
		done := make(chan error, 1)
		ts := guardServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := io.ReadAll(r.Body)
			done <- err
		}), true)
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { _, _ = pw.Write([]byte("0123456789")) }() // then nothing
		req, _ := http.NewRequest("POST", ts.URL, pr)
		go func() {
			if resp, err := ts.Client().Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		if err := waitHandler(t, done, "http2"); err == nil {
			t.Fatal("read a body that never arrived")
		}
	})
}

// The timeouts bound each read and write, not the pauses between them: a
// slow origin or an event stream quiet for longer than send_timeout is not
// cut, and a slowly uploaded body that keeps coming is read whole.
func TestProgressTimeoutsSparePauses(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		time.Sleep(500 * time.Millisecond) // a slow origin
		_, _ = w.Write(b)
		http.NewResponseController(w).Flush()
		time.Sleep(500 * time.Millisecond) // an event stream's pause
		_, _ = w.Write([]byte("!"))
	})
	for _, tls := range []bool{false, true} {
		ts := guardServer(t, h, tls)
		pr, pw := io.Pipe()
		go func() {
			for _, s := range []string{"a", "b", "c"} {
				time.Sleep(200 * time.Millisecond) // each within 300ms
				_, _ = pw.Write([]byte(s))
			}
			pw.Close()
		}()
		resp, err := ts.Client().Post(ts.URL, "text/plain", pr)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "abc!" {
			t.Errorf("tls=%v: %s %q %v", tls, resp.Proto, b, err)
		}
	}
}

func TestProgressTimeoutConfig(t *testing.T) {
	var cfg Config
	cfg.SetDefaults()
	if cfg.SendTimeout.D() != time.Minute || cfg.ClientBodyTimeout.D() != time.Minute {
		t.Errorf("defaults %s %s", cfg.SendTimeout, cfg.ClientBodyTimeout)
	}
	cfg.SendTimeout = -1
	cfg.ClientBodyTimeout = -1
	cfg.MaxConnections = -1
	err := cfg.Validate()
	for _, key := range []string{"send_timeout", "client_body_timeout", "max_connections"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("negative %s: %v", key, err)
		}
	}
}

// An HTTP/2 client that stops reading its socket altogether (rather than
// just holding a stream's flow-control window) blocks the connection's
// frame writer: stream deadlines cannot even send their resets. The
// connection is closed after send_timeout without a written byte, and the
// handlers on it return.
func TestSendTimeoutClosesStalledHTTP2Connection(t *testing.T) {
	done := make(chan error, 4)
	ts := guardServer(t, writeUntilError(done), true)
	fr, hb := rawH2(t, ts, 4<<10)
	// Windows wide open: only TCP stops the server.
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	_ = fr.WriteWindowUpdate(0, 1<<31-1-65535)
	for id := uint32(1); id <= 5; id += 2 {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb, EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	// Read nothing from here on.
	// (Closing the TLS connection waits up to 5s more for its
	// close_notify alert to be written.)
	for range 3 {
		if err := waitHandler(t, done, "http2 connection"); err == nil {
			t.Fatal("256MiB written to a connection whose client reads nothing")
		}
	}
}

// rawH2 opens an HTTP/2 connection to ts by hand (a receive buffer of
// rcvBuf bytes when > 0) and returns its framer, the preface and an
// empty SETTINGS sent, and the HPACK block of a GET for "/".
func rawH2(t *testing.T, ts *httptest.Server, rcvBuf int) (*http2.Framer, []byte) {
	t.Helper()
	raw, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if rcvBuf > 0 {
		_ = raw.(*net.TCPConn).SetReadBuffer(rcvBuf)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // test server
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil || c.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("handshake: %v %q", err, c.ConnectionState().NegotiatedProtocol)
	}
	_ = c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "x"}, {":path", "/"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return fr, hb.Bytes()
}

// Checked and fine, kept as a regression: HTTP/2 rapid reset
// (CVE-2023-44487). Streams opened and reset at once end their handlers
// (which honour cancellation, as the proxy does), the server keeps
// serving, and no goroutine is left.
func TestHTTP2RapidReset(t *testing.T) {
	var active atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		active.Add(1)
		defer active.Add(-1)
		<-r.Context().Done() // a slow origin
	})
	before := runtime.NumGoroutine()
	ts := guardServer(t, h, true)
	fr, hb := rawH2(t, ts, 0)
	_ = fr.WriteSettings()
	for id := uint32(1); id < 2*500; id += 2 {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb, EndStream: true, EndHeaders: true}); err != nil {
			break // the server may hang up on the flood: fine
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
	}
	c := ts.Client()
	resp, err := c.Get(ts.URL + "/ok")
	if err != nil {
		t.Fatalf("a normal client after the flood: %v", err)
	}
	resp.Body.Close()
	c.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for active.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := active.Load(); n > 0 {
		t.Fatalf("%d handlers still running 5s after their streams were reset", n)
	}
	ts.Close()
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines before, %d after", before, n)
	}
}

// Checked and fine, kept as regressions: a TLS handshake that stalls after
// a partial ClientHello is cut by read_header_timeout (net/http's
// handshake timeout is the smallest of the read/write timeouts), and a
// few hundred slowloris connections neither stop a normal client nor
// leave goroutines behind once the timeout has closed them.
func TestStalledHandshakesAndSlowlorisAreBounded(t *testing.T) {
	cfg := Config{Listen: "127.0.0.1:0", ReadHeaderTimeout: units.Duration(300 * time.Millisecond)}
	cfg.SetDefaults()
	before := runtime.NumGoroutine()
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewServer(&cfg, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), slog.New(slog.DiscardHandler))
	ts.StartTLS()
	plain := httptest.NewUnstartedServer(nil)
	plain.Config = NewServer(&cfg, ts.Config.Handler, nil)
	closeFast := func() {}
	if fastFront {
		closeFast = startFast(t, plain)
	} else {
		plain.Start()
	}

	var conns []net.Conn
	for i := range 200 {
		addr, start := plain.Listener.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
		if i%2 == 1 {
			addr, start = ts.Listener.Addr().String(), "\x16\x03\x01\x02\x00\x01" // a ClientHello's first bytes
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, start)
		conns = append(conns, c)
	}
	for _, u := range []string{plain.URL, ts.URL} {
		c := ts.Client()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatalf("a normal client among 200 stalled ones: %v", err)
		}
		resp.Body.Close()
		c.CloseIdleConnections()
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("stalled connection %d still open 5s after a 300ms timeout", i)
		}
		c.Close()
	}
	ts.Close()
	plain.Close()
	closeFast()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines before, %d after", before, n)
	}
}

// sendfileWriter records what its ReadFrom was given, as the connection's
// sendfile would see it.
type sendfileWriter struct {
	http.ResponseWriter
	srcs []io.Reader
}

func (w *sendfileWriter) ReadFrom(src io.Reader) (int64, error) {
	w.srcs = append(w.srcs, src)
	return io.Copy(io.Discard, src)
}

func (w *sendfileWriter) SetWriteDeadline(time.Time) error { return nil }
func (w *sendfileWriter) SetReadDeadline(time.Time) error  { return nil }

// The send_timeout chunks keep a file body on the sendfile path: each
// chunk is one io.LimitedReader straight around the file, also when the
// handler limited the length itself (io.CopyN, ranges).
func TestGuardKeepsSendfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 200<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{}
	cfg.SetDefaults()
	for _, limit := range []int64{-1, 100 << 10} {
		sw := &sendfileWriter{ResponseWriter: httptest.NewRecorder()}
		var copied int64
		Guard(&cfg, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			f, _ := os.Open(path)
			defer f.Close()
			if limit < 0 {
				copied, _ = io.Copy(w, f)
			} else {
				copied, _ = io.CopyN(w, f, limit)
			}
		})).ServeHTTP(sw, httptest.NewRequest("GET", "/", nil))
		want := int64(200 << 10)
		if limit >= 0 {
			want = limit
		}
		if copied != want {
			t.Errorf("limit %d: copied %d, want %d", limit, copied, want)
		}
		for i, src := range sw.srcs {
			lr, ok := src.(*io.LimitedReader)
			if _, file := lr.R.(syscall.Conn); !ok || !file { // what net's sendfile takes
				t.Errorf("limit %d: chunk %d reaches ReadFrom as %T (%T inside): sendfile lost", limit, i, src, lr.R)
			}
		}
	}
}

// On a keep-alive HTTP/1.1 connection the write deadline carries over
// from one request to the next: a request after a pause longer than
// send_timeout is still answered, and a later request whose client stops
// reading is still cut.
func TestSendTimeoutAcrossKeepAlive(t *testing.T) {
	done := make(chan error, 1)
	ts := guardServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall" {
			writeUntilError(done).ServeHTTP(w, r)
			return
		}
		io.WriteString(w, "ok")
	}), false)
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
	br := bufio.NewReader(c)
	for i := range 3 {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "ok" {
			t.Fatalf("request %d: %q %v", i, b, err)
		}
		time.Sleep(400 * time.Millisecond) // longer than send_timeout (300ms)
	}
	if _, err := io.WriteString(c, "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := waitHandler(t, done, "keep-alive"); err == nil {
		t.Fatal("256MiB written to a client that reads nothing")
	}
}
