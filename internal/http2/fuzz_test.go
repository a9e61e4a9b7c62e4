package http2

import (
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outpost-edge/outpost/internal/logtest"
)

// FuzzServeConn feeds arbitrary bytes after the client preface to a
// connection: whatever frames they make, the read loop and the handlers
// never panic (serve recovers and logs, so the log is checked), and the
// connection ends or answers a PING sent after them.
func FuzzServeConn(f *testing.F) {
	var seed bytes.Buffer
	fr := xhttp2.NewFramer(&seed, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "x"}, {":path", "/a"}, {"content-length", "3"}, {"trailer", "x-t"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 10})
	fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	fr.WriteData(1, false, []byte("abc"))
	fr.WriteWindowUpdate(1, 100)
	fr.WriteRSTStream(1, xhttp2.ErrCodeCancel)
	f.Add(seed.Bytes())
	seed.Reset()
	fr.WriteSettings()
	fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndHeaders: false})
	fr.WriteContinuation(3, true, nil)
	fr.WriteData(3, true, []byte("xyz"))
	fr.WriteGoAway(0, xhttp2.ErrCodeNo, nil)
	f.Add(seed.Bytes())
	f.Add([]byte{})

	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, data []byte) {
	{
		var logs logtest.Buffer
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Trailer", "X-T")
			w.WriteHeader(200)
			w.Write(b)
			w.Write([]byte(strings.Repeat("z", 20000)))
			w.Header().Set("X-T", "done")
		})
		s := New(&http.Server{Handler: h, ErrorLog: log.New(&logs, "", 0)})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cli, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeConn(srv)
		}()
		// Bytes ending mid-frame swallow the PING: the deadline ends those.
		cli.SetDeadline(time.Now().Add(2 * time.Second))
		pong := make(chan bool, 1)
		go func() {
			rf := xhttp2.NewFramer(io.Discard, cli)
			rf.MaxHeaderListSize = 1 << 20
			ok := false
			for {
				fr, err := rf.ReadFrame()
				if err != nil {
					break
				}
				if p, isPing := fr.(*xhttp2.PingFrame); isPing && p.IsAck() && p.Data == [8]byte{'f', 'u', 'z', 'z'} {
					ok = true
					break
				}
			}
			pong <- ok
		}()
		var ping bytes.Buffer
		xhttp2.NewFramer(&ping, nil).WritePing(false, [8]byte{'f', 'u', 'z', 'z'})
		// Written in a goroutine: a server that stops reading (it closed
		// the connection) must not block the test. The half-close ends a
		// server's wait for the rest of a frame.
		go func() {
			io.WriteString(cli, xhttp2.ClientPreface)
			cli.Write(data)
			cli.Write(ping.Bytes())
			cli.(*net.TCPConn).CloseWrite()
		}()
		<-pong
		cli.Close()
		s.Close()
		<-done
		if strings.Contains(logs.String(), "panic") {
			t.Fatalf("server panicked:\n%s", logs.String())
		}
	}
}
