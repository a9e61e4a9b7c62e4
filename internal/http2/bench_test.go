package http2

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// BenchmarkServe is a cache hit's shape over one connection: batches of
// 10 concurrent GETs (h2load -m10), each answered with a 1 KiB body and a
// CDN's usual header fields. Allocations include the raw client's few.
func BenchmarkServe(b *testing.B) {
	body := []byte(strings.Repeat("x", 1024))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		hd.Set("Cache-Control", "public, max-age=3600")
		hd.Set("Etag", `"abc123"`)
		hd.Set("Age", "12")
		hd.Set("Cache-Status", "outpost; hit")
		hd.Set("X-Cache", "HIT")
		w.Write(body)
	})
	certs, _ := testCert()
	s := New(&http.Server{Handler: h, ErrorLog: discardLog()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	conf := &tls.Config{Certificates: certs, NextProtos: []string{"h2"}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, conf)
				if tc.Handshake() == nil {
					s.ServeConn(tc)
				}
				c.Close()
			}()
		}
	}()
	defer s.Close()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, xhttp2.ClientPreface)
	fr := xhttp2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.SetReuseFrames()
	fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 1 << 30})
	fr.WriteWindowUpdate(0, 1<<30)
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "bench.test"}, {Name: ":path", Value: "/1k"},
		{Name: "user-agent", Value: "h2load nghttp2/1.52.0"}, {Name: "accept-encoding", Value: "gzip, deflate"},
	} {
		enc.WriteField(f)
	}
	block := bytes.Clone(hbuf.Bytes())
	hbuf.Reset()
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "bench.test"}, {Name: ":path", Value: "/1k"},
		{Name: "user-agent", Value: "h2load nghttp2/1.52.0"}, {Name: "accept-encoding", Value: "gzip, deflate"},
	} {
		enc.WriteField(f) // indexed now: what later requests look like
	}
	indexed := bytes.Clone(hbuf.Bytes())
	id := uint32(1)
	const batch = 10
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += batch {
		for i := 0; i < batch; i++ {
			blk := indexed
			if id == 1 {
				blk = block
			}
			fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
			id += 2
		}
		for done := 0; done < batch; {
			f, err := fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *xhttp2.DataFrame:
				if f.StreamEnded() {
					done++
				}
			case *xhttp2.MetaHeadersFrame:
				if f.StreamEnded() {
					done++
				}
			case *xhttp2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			}
		}
	}
}
