package lb

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/outpost-edge/outpost/internal/httpwire"
)

// FuzzReadResponse: a head the synchronous path parses itself reads as
// http.ReadResponse reads it — status, fields, length, close, body.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
		"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\n\r\n",
		"HTTP/1.1 200\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nPragma: no-cache\r\nX-A: 1\r\nx-a: 2\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nX: \xff\t\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 200 OK\r\nPragma: x\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nCache-Control: max-age=1\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTrailer: X\r\n\r\nx",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, head bool) {
		req := &http.Request{Method: "GET"}
		if head {
			req.Method = "HEAD"
		}
		br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
		br.Peek(1)
		got := readPlainResponse(br, req, nil)
		// The pass lane's list of fields (PassRequest.Head) is the
		// same head: taken or left alike, the same response, and the
		// same fields in the order they came.
		rawBR := bufio.NewReaderSize(strings.NewReader(raw), 4096)
		rawBR.Peek(1)
		reuse := &reusedResponse{fields: make([]httpwire.Field, 1, 4)}
		if rawGot := readPlainResponse(rawBR, req, reuse); (rawGot == nil) != (got == nil) {
			t.Fatalf("%q: parsed as a list %v, as a map %v", raw, rawGot != nil, got != nil)
		} else if got != nil {
			if rawGot.Header != nil || rawGot.Status != got.Status || rawGot.StatusCode != got.StatusCode ||
				rawGot.ContentLength != got.ContentLength || rawGot.Close != got.Close {
				t.Fatalf("%q: as a list %+v; as a map %+v", raw, rawGot, got)
			}
			h := http.Header{}
			for _, f := range reuse.fields {
				h[f.Name] = append(h[f.Name], f.Value)
			}
			if !reflect.DeepEqual(h, got.Header) {
				t.Fatalf("%q: fields %v; header %v", raw, reuse.fields, got.Header)
			}
			rb, _ := io.ReadAll(rawGot.Body)
			gb, _ := io.ReadAll(got.Body)
			if !bytes.Equal(rb, gb) {
				t.Fatalf("%q: body as a list %q; as a map %q", raw, rb, gb)
			}
			br = bufio.NewReaderSize(strings.NewReader(raw), 4096)
			br.Peek(1)
			got = readPlainResponse(br, req, nil)
		}
		if got == nil {
			return
		}
		want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), req)
		if err != nil {
			t.Fatalf("%q: parsed here, http.ReadResponse refuses: %v", raw, err)
		}
		if got.Status != want.Status || got.StatusCode != want.StatusCode || got.ContentLength != want.ContentLength ||
			got.Close != want.Close || got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor {
			t.Fatalf("%q: here %q %d len %d close %v; http.ReadResponse %q %d len %d close %v", raw,
				got.Status, got.StatusCode, got.ContentLength, got.Close, want.Status, want.StatusCode, want.ContentLength, want.Close)
		}
		// The one difference, on purpose: a Connection field that says
		// close stays here, for the relay to remove what it names.
		gotHeader := got.Header.Clone()
		if httpguts.HeaderValuesContainsToken(gotHeader["Connection"], "close") {
			delete(gotHeader, "Connection")
		}
		if !reflect.DeepEqual(gotHeader, want.Header) {
			t.Fatalf("%q: header here %v; http.ReadResponse %v", raw, got.Header, want.Header)
		}
		gb, gerr := io.ReadAll(got.Body)
		wb, werr := io.ReadAll(want.Body)
		if !bytes.Equal(gb, wb) || (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: body here %q %v; http.ReadResponse %q %v", raw, gb, gerr, wb, werr)
		}
	})
}

// FuzzWriteRequest: what writeRequest writes reads back as what
// Request.Write writes for the same request.
func FuzzWriteRequest(f *testing.F) {
	f.Add("GET", "example.com", "/a/b", "q=1", "X-A", "1", "")
	f.Add("DELETE", "example.com:8080", "/a%2Fb", "", "User-Agent", "", "")
	f.Add("POST", "[::1]:80", "/", "", "X-A", "a\r\nb", "ua")
	f.Add("GET", "bücher.example", "/ü", "x=ü", "X-B", " spaced ", "")
	f.Add("OPTIONS", "a", "", "", "Content-Length", "5", "")
	f.Fuzz(func(t *testing.T, method, host, path, query, k, v, ua string) {
		u := &url.URL{Scheme: "http", Host: "backend:80", Path: path, RawQuery: query}
		mk := func() *http.Request {
			h := http.Header{}
			h[k] = []string{v}
			if ua != "" {
				h["User-Agent"] = []string{ua}
			}
			return &http.Request{Method: method, URL: u, Host: host, Header: h, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
		}
		var a, b bytes.Buffer
		wa := bufio.NewWriter(&a)
		errA := writeRequest(wa, mk())
		wa.Flush()
		wb := bufio.NewWriter(&b)
		errB := mk().Write(wb)
		wb.Flush()
		if errA != nil || errB != nil {
			if errA == nil {
				t.Fatalf("writeRequest took what Request.Write refuses (%v): %q", errB, a.String())
			}
			return
		}
		ra, errA := http.ReadRequest(bufio.NewReader(&a))
		rb, errB := http.ReadRequest(bufio.NewReader(&b))
		if (errA == nil) != (errB == nil) {
			t.Fatalf("read back: %v vs Request.Write's %v", errA, errB)
		}
		if errA != nil {
			return
		}
		if ra.Method != rb.Method || ra.RequestURI != rb.RequestURI || ra.Host != rb.Host ||
			ra.ContentLength != rb.ContentLength || !reflect.DeepEqual(ra.Header, rb.Header) {
			t.Fatalf("writeRequest: %s %s %q %d %v\nRequest.Write: %s %s %q %d %v", ra.Method, ra.RequestURI, ra.Host, ra.ContentLength, ra.Header,
				rb.Method, rb.RequestURI, rb.Host, rb.ContentLength, rb.Header)
		}
	})
}
