package http1

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Many clients at once, each mixing what the fast path serves with what
// it hands to net/http, pipelining, and hanging up mid-response: every
// answer read belongs to its request (no desync across requests or
// connections), and the race detector sees the server's concurrency.
func TestConcurrentMixedClients(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n := 0
		fmt.Sscanf(r.URL.Query().Get("n"), "%d", &n)
		w.Header().Set("X-Echo", r.URL.Query().Get("id"))
		io.WriteString(w, r.URL.Query().Get("id")+":"+string(b)+strings.Repeat("z", n))
	})
	_, fast, _ := servers(t, h, nil)
	const clients, rounds = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			conn, err := net.Dial("tcp", fast)
			if err != nil {
				errs <- err
				return
			}
			defer func() { conn.Close() }()
			br := bufio.NewReader(conn)
			for i := 0; i < rounds; i++ {
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				id := fmt.Sprintf("c%dr%d", c, i)
				var reqs []string
				var want []string
				kind := rng.IntN(5)
				switch kind {
				case 0: // one GET, sometimes large
					n := []int{0, 100, 20000}[rng.IntN(3)]
					reqs = append(reqs, fmt.Sprintf("GET /?id=%s&n=%d HTTP/1.1\r\nHost: a\r\n\r\n", id, n))
					want = append(want, id+":"+strings.Repeat("z", n))
				case 1: // three pipelined GETs
					for j := 0; j < 3; j++ {
						reqs = append(reqs, fmt.Sprintf("GET /?id=%s-%d HTTP/1.1\r\nHost: a\r\n\r\n", id, j))
						want = append(want, fmt.Sprintf("%s-%d:", id, j))
					}
				case 2: // a Content-Length body
					reqs = append(reqs, fmt.Sprintf("POST /?id=%s HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", id))
					want = append(want, id+":hello")
				case 3: // chunked: the connection goes to net/http from here
					reqs = append(reqs, fmt.Sprintf("POST /?id=%s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", id))
					want = append(want, id+":abc")
				case 4: // hang up mid-response, then reconnect
					io.WriteString(conn, fmt.Sprintf("GET /?id=%s&n=200000 HTTP/1.1\r\nHost: a\r\n\r\n", id))
					br.ReadByte()
					conn.Close()
					if conn, err = net.Dial("tcp", fast); err != nil {
						errs <- err
						return
					}
					br = bufio.NewReader(conn)
					continue
				}
				if _, err := io.WriteString(conn, strings.Join(reqs, "")); err != nil {
					errs <- err
					return
				}
				for _, w := range want {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						errs <- fmt.Errorf("%s: %v", id, err)
						return
					}
					b, err := io.ReadAll(resp.Body)
					if err != nil || string(b) != w || !strings.HasPrefix(w, resp.Header.Get("X-Echo")+":") {
						errs <- fmt.Errorf("%s: got %.40q (%v), want %.40q", id, b, err, w)
						return
					}
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
