// Command https_tmpharness is a temporary, uncommitted harness: a static
// body served over tlsedge's TLS config (internal CA), to compare Go's TLS
// stack with nginx before the node wiring exists.
package main

import (
	"bytes"
	"context"
	"flag"
	"log"
	"net"
	"net/http"

	"github.com/outpost-edge/outpost/internal/tlsedge"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18450", "")
	dir := flag.String("dir", "/tmp/harness", "")
	flag.Parse()
	cfg := tlsedge.Config{Enabled: true, Mode: tlsedge.ModeInternal, Listen: *listen, HTTPListen: "off", Names: []string{"bench.test"},
		Internal: tlsedge.InternalConfig{RootExport: *dir + "/root.pem"}}
	f := false
	cfg.HTTP3 = &f
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		log.Fatal(err)
	}
	m, err := tlsedge.New(cfg, tlsedge.Options{DataDir: *dir})
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	small := bytes.Repeat([]byte("x"), 1024)
	large := bytes.Repeat([]byte("x"), 102400)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := small
		if r.URL.Path == "/100k" {
			b = large
		}
		w.Header()["Content-Type"] = []string{"text/plain"}
		w.Header()["X-Cache"] = []string{"HIT"}
		_, _ = w.Write(b)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: m.Headers(h), TLSConfig: m.TLSConfig()}
	log.Fatal(srv.ServeTLS(ln, "", ""))
}
