package http1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A body read after its handler returned — a transport still writing it
// upstream in its own goroutine does this — gets an error, as net/http's
// closed body gives, and takes no byte of the next request.
func TestBodyReadAfterHandlerReturns(t *testing.T) {
	type result struct {
		n   int
		err error
	}
	late := make(chan result, 1)
	go1 := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/early" {
			io.WriteString(w, "path="+r.URL.Path)
			return
		}
		body := r.Body
		go func() {
			<-go1
			var p [64]byte
			n, err := body.Read(p[:])
			late <- result{n, err}
		}()
		io.WriteString(w, "early")
	})
	std, fast, _ := servers(t, h, nil)
	for _, addr := range []string{std, fast} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		io.WriteString(c, "POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		go1 <- struct{}{}
		// The late read either fails at once or, on a server that lets it
		// at the connection, waits for bytes: send the next request.
		time.Sleep(50 * time.Millisecond)
		io.WriteString(c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
		select {
		case r := <-late:
			if r.err == nil || r.n > 0 {
				t.Errorf("%s: a read after the handler returned got %d bytes, err %v; net/http gives an error", addr, r.n, r.err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s: a read after the handler returned blocked", addr)
		}
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: next request: %v", addr, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "path=/next" {
			t.Errorf("%s: next request answered %q", addr, b)
		}
	}
}

