package edge

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestSendfileListener serves file bodies through the raw sendfile path
// over real connections: whole files of several sizes (empty, one byte,
// across the per-call chunk), a slice from an offset (io.CopyN hands
// ReadFrom a LimitedReader), and keep-alive after each.
func TestSendfileListener(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3*rawSendfileChunk+123)
	rand.Read(data)
	path := filepath.Join(dir, "body")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	before := rawSendfiles.Load()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var off, n int64
		fmt.Sscanf(r.URL.Query().Get("off"), "%d", &off)
		fmt.Sscanf(r.URL.Query().Get("n"), "%d", &n)
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		f.Seek(off, io.SeekStart)
		w.Header().Set("Content-Length", fmt.Sprint(n))
		w.WriteHeader(200)
		if r.URL.Query().Get("whole") != "" {
			io.Copy(w, f) // the file to its end: n covers the rest
		} else {
			io.CopyN(w, f, n)
		}
		// The file position moved by exactly what was sent.
		if pos, _ := f.Seek(0, io.SeekCurrent); pos != off+n {
			t.Errorf("file position %d after sending [%d,+%d)", pos, off, n)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sln := SendfileListener(ln)
	if _, ok := sln.(sendfileListener); !ok {
		t.Fatal("a TCP listener was not wrapped")
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(sln)
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	size := int64(len(data))
	cases := []struct {
		name   string
		off, n int64
		whole  bool
	}{
		{"empty", 0, 0, false},
		{"one byte", 5, 1, false},
		{"whole file", 0, size, true},
		{"rest from an offset", rawSendfileChunk - 7, size - (rawSendfileChunk - 7), true},
		{"slice across chunks", 1000, 2*rawSendfileChunk + 50, false},
	}
	for _, c := range cases {
		url := fmt.Sprintf("http://%s/?off=%d&n=%d", ln.Addr(), c.off, c.n)
		if c.whole {
			url += "&whole=1"
		}
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, data[c.off:c.off+c.n]) {
			t.Fatalf("%s: %d bytes, err %v; want %d bytes from %d", c.name, len(got), err, c.n, c.off)
		}
	}
	// Every body over 512 bytes took the raw path (net/http copies the
	// first 512 through a buffer, for sniffing, and smaller ones entirely).
	if n := rawSendfiles.Load() - before; n != int64(len(cases)-2) {
		t.Errorf("%d bodies went through the raw sendfile path, want %d", n, len(cases)-2)
	}
}
