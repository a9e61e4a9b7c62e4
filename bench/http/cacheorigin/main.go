// Command cacheorigin is the origin of the cache benchmark: it serves
// cacheable objects of fixed sizes (GET /1k, /100k, /10m, /1g, or /bytes/N)
// with Cache-Control: max-age=3600, an ETag and Content-Length, and counts
// the requests it answered (GET /_count), so the benchmark can check that
// the caches in front really served hits.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

var sizes = map[string]int64{"/1k": 1 << 10, "/100k": 100 << 10, "/10m": 10 << 20, "/1g": 1 << 30}

// pattern is a repeating reader so a 1 GiB body needs no 1 GiB buffer.
type pattern struct{ left int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	n := int64(len(b))
	if n > p.left {
		n = p.left
	}
	for i := int64(0); i < n; i++ {
		b[i] = 'a' + byte(i%26)
	}
	p.left -= n
	return int(n), nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "address to listen on")
	flag.Parse()
	var count atomic.Int64
	srv := &http.Server{
		Addr:              *listen,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/_count" {
				fmt.Fprintln(w, count.Load())
				return
			}
			count.Add(1)
			n, ok := sizes[r.URL.Path]
			if !ok {
				v, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/bytes/"), 10, 64)
				if err != nil || v < 0 || v > 4<<30 {
					http.NotFound(w, r)
					return
				}
				n = v
			}
			h := w.Header()
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Cache-Control", "public, max-age=3600")
			h.Set("ETag", fmt.Sprintf(`"obj-%d"`, n))
			h.Set("Last-Modified", "Mon, 01 Jun 2026 00:00:00 GMT")
			h.Set("Content-Length", strconv.FormatInt(n, 10))
			if r.Method == http.MethodHead {
				return
			}
			_, _ = io.CopyBuffer(w, &pattern{left: n}, make([]byte, 64<<10))
		}),
	}
	fmt.Fprintf(os.Stderr, "cacheorigin listening on %s\n", *listen)
	log.Fatal(srv.ListenAndServe())
}
