package edge

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/outpost-edge/outpost/internal/http1"
)

// sendfileConn counts the ReadFrom calls that reach the socket's
// (sendfile).
type sendfileConn struct {
	*net.TCPConn
	calls *atomic.Int32
}

func (c sendfileConn) ReadFrom(r io.Reader) (int64, error) {
	c.calls.Add(1)
	return c.TCPConn.ReadFrom(r)
}

type sendfileListener struct {
	net.Listener
	calls *atomic.Int32
}

func (l sendfileListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return sendfileConn{c.(*net.TCPConn), l.calls}, nil
}

// TestCopyBodies: behind CopyBodies a file body reaches the client whole
// and never the socket's ReadFrom — with Outpost's HTTP/1.1 server and
// with net/http, each of which hands a file to the connection's ReadFrom;
// without it, it does (the control, or the test would prove nothing).
func TestCopyBodies(t *testing.T) {
	body := make([]byte, copyBufSize*3+1234)
	for i := range body {
		body[i] = byte(i * 13 / 7)
	}
	path := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		io.Copy(w, f)
	})
	servers := map[string]func(net.Listener) (closer io.Closer){
		"http1": func(ln net.Listener) io.Closer {
			s := http1.New(&http.Server{Handler: h})
			go s.Serve(ln)
			return s
		},
		"net/http": func(ln net.Listener) io.Closer {
			s := &http.Server{Handler: h}
			go s.Serve(ln)
			return s
		},
	}
	for name, serve := range servers {
		for _, copying := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/copy=%v", name, copying), func(t *testing.T) {
				raw, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				var calls atomic.Int32
				var ln net.Listener = sendfileListener{raw, &calls}
				if copying {
					ln = CopyBodies(ln)
				}
				defer serve(ln).Close()
				for range 2 { // and again on the kept-alive connection
					res, err := http.Get("http://" + raw.Addr().String())
					if err != nil {
						t.Fatal(err)
					}
					got, err := io.ReadAll(res.Body)
					res.Body.Close()
					if err != nil || !bytes.Equal(got, body) {
						t.Fatalf("%d bytes (%v), want the file's %d", len(got), err, len(body))
					}
				}
				switch n := calls.Load(); {
				case copying && n != 0:
					t.Fatalf("%d ReadFrom calls reached the socket: sendfile used", n)
				case !copying && n == 0:
					t.Fatal("the control sent no file through the socket's ReadFrom")
				}
			})
		}
	}
}
