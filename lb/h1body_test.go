package lb

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A backend that answers before reading the request body and closes the
// connection at once, the body unread (its kernel then resets the
// connection, and the rest of the body fails to go), still has its answer
// reach the client: the synchronous path reads what came back before it
// counts the failed write. (http.Transport, which reads while it writes,
// loses that race about once in 25 runs of this test.)
func TestH1EarlyAnswerToUnreadBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo long")
			}()
		}
	}()
	rt := testH1(8, time.Minute, 0)
	defer rt.retire()
	for _, size := range []int{10, 8 << 10, maxInlineBody} {
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/upload", strings.NewReader(strings.Repeat("u", size)))
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("%d-byte body: %v", size, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "too long" {
			t.Fatalf("%d-byte body: %d %q, want the backend's 413", size, resp.StatusCode, b)
		}
	}
}
