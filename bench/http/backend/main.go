// Command backend is the origin of the pass-through benchmark: it answers
// every request with the same 1 KiB body over keep-alive HTTP/1.1, so the
// figures measure the proxy in front of it, not the origin.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "address to listen on")
	size := flag.Int("size", 1024, "response body size in bytes")
	flag.Parse()
	body := bytes.Repeat([]byte("x"), *size)
	length := strconv.Itoa(len(body))
	srv := &http.Server{
		Addr:              *listen,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"text/plain"}
			h["Content-Length"] = []string{length}
			_, _ = w.Write(body)
		}),
	}
	fmt.Fprintf(os.Stderr, "backend listening on %s\n", *listen)
	log.Fatal(srv.ListenAndServe())
}
