package lb

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/outpost-edge/outpost/internal/httpwire"
)

// The wire format of the synchronous path, for the shapes nearly all
// proxied requests and responses have. Each function does what
// Request.Write or http.ReadResponse does for that shape, without their
// sorted header writes and per-field allocations; anything else is left
// to them (see writeRequest and readResponse).

// writeRequest writes a request as req.Write would: bodiless, or with a
// body of known length (ContentLength > 0), which it reads to that length
// and closes. It falls back to req.Write for a host that needs punycode
// or is invalid, an opaque URL, or a control byte in the target. A
// failure to read the body is a bodyErr; any other error is the writer's.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	u := req.URL
	path := u.EscapedPath()
	if !asciiHost(host) || !httpguts.ValidHostHeader(host) || u.Opaque != "" || strings.IndexByte(host, '%') >= 0 ||
		hasCTL(path) || hasCTL(u.RawQuery) {
		if req.ContentLength > 0 {
			// req.Write reads and closes the body; which of its errors
			// were the body's it does not say. (On a copy: the caller's
			// request is not ours to change.)
			body := &bodyReader{rc: req.Body}
			r := *req
			r.Body = body
			err := r.Write(bw)
			if body.err != nil {
				return bodyErr{body.err}
			}
			return err
		}
		return req.Write(bw)
	}
	for k := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	if path == "" {
		path = "/"
	}
	bw.WriteString(path)
	if u.ForceQuery || u.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(u.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	ua := "Go-http-client/1.1"
	if vs, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(vs) > 0 {
			ua = vs[0]
		}
	}
	if ua != "" {
		httpwire.WriteField(bw, "User-Agent", ua)
	}
	if req.ContentLength > 0 {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), req.ContentLength, 10))
		bw.WriteString("\r\n")
	} else if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		// Request.Write's rule for an empty body: a zero length for the
		// methods servers expect a body with.
		bw.WriteString("Content-Length: 0\r\n")
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vs {
			httpwire.WriteField(bw, k, v)
		}
	}
	_, err := bw.WriteString("\r\n")
	if err != nil || req.ContentLength <= 0 {
		return err
	}
	body := bodyReader{rc: req.Body}
	n, err := bw.ReadFrom(io.LimitReader(&body, req.ContentLength))
	req.Body.Close()
	switch {
	case body.err != nil:
		return bodyErr{body.err}
	case err != nil:
		return err
	case n < req.ContentLength:
		return bodyErr{fmt.Errorf("lb: request body of %d bytes, not its Content-Length %d", n, req.ContentLength)}
	}
	return nil
}

// bodyReader keeps the error reading a request body, so that it is not
// taken for the connection's (the request is then not the backend's
// fault, nor one to repeat on another connection).
type bodyReader struct {
	rc  io.ReadCloser
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *bodyReader) Close() error { return b.rc.Close() }

// bodyErr is a failure to read the request body being sent.
type bodyErr struct{ err error }

func (e bodyErr) Error() string { return e.err.Error() }
func (e bodyErr) Unwrap() error { return e.err }

func asciiHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			return false
		}
	}
	return true
}

func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// readResponse reads the response to req. A head already in the buffer
// (the usual case: backends send a response in one write) of the plain
// kind — HTTP/1.1, a final status, a single Content-Length or no body by
// rule, no Transfer-Encoding — is parsed here; anything else goes to
// http.ReadResponse, which reads from the same untouched buffer.
// A plain head is parsed into reuse when it is set: the pass lane's
// response, which nothing keeps once relayed.
func readResponse(br *bufio.Reader, req *http.Request, reuse *reusedResponse) (*http.Response, error) {
	if resp := readPlainResponse(br, req, reuse); resp != nil {
		return resp, nil
	}
	// http.ReadResponse drops a Connection field that says close, and
	// with it the names of the other fields it makes hop-by-hop, which a
	// proxy must then remove (RFC 9110, 7.6.1): kept, as the plain path
	// keeps it, for the relay's rule to see.
	var conn []string
	if buf, _ := br.Peek(br.Buffered()); len(buf) > 0 {
		if end := httpwire.HeadEnd(buf, 0); end > 0 {
			conn = connectionFields(buf[:end])
		}
	}
	resp, err := http.ReadResponse(br, req)
	if err == nil && conn != nil && resp.Header["Connection"] == nil {
		resp.Header["Connection"] = conn
	}
	return resp, err
}

// connectionFields is the values of the Connection fields of a head,
// trimmed; nil when it has none.
func connectionFields(head []byte) []string {
	var vals []string
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		const name = "connection:"
		if len(line) > len(name) && bytes.EqualFold(line[:len(name)], []byte(name)) {
			vals = append(vals, strings.Trim(string(line[len(name):]), " \t\r"))
		}
	}
	return vals
}

// reusedResponse is a response, its fields and its body readers, which
// one connection's pass-lane requests take in turn.
type reusedResponse struct {
	resp   http.Response
	fields []httpwire.Field // the head's, when it was the plain kind (resp.Header is nil)
	sized  httpwire.SizedBody
	body   h1Body
}

func readPlainResponse(br *bufio.Reader, req *http.Request, reuse *reusedResponse) *http.Response {
	buf, _ := br.Peek(br.Buffered())
	end := httpwire.HeadEnd(buf, 0)
	if end <= 0 {
		return nil
	}
	resp := parseResponseHead(buf[:end], req, reuse)
	if resp == nil {
		return nil
	}
	br.Discard(end)
	switch n := resp.ContentLength; {
	case req.Method == http.MethodHead, !bodyAllowed(resp.StatusCode), n == 0:
		resp.Body = http.NoBody
	case reuse != nil:
		reuse.sized = httpwire.SizedBody{R: br, Left: n}
		resp.Body = &reuse.sized
	default:
		resp.Body = &httpwire.SizedBody{R: br, Left: n}
	}
	return resp
}

func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// parseResponseHead parses a complete head, or returns nil when it is not
// the plain kind. Into reuse, when it is set (the pass lane's), the
// fields go as the list they came in, and the response's Header is nil;
// else into a new response and its header map. Either way the one change
// a header map's reader makes is made: Pragma: no-cache without
// Cache-Control brings one. A Connection field that says close stays
// (http.ReadResponse drops it): the other fields it names are hop-by-hop
// too, for the relay to remove.
func parseResponseHead(raw []byte, req *http.Request, reuse *reusedResponse) *http.Response {
	s := string(raw) // every string below is a piece of this one
	eol := strings.IndexByte(s, '\r')
	line := s[:eol]
	if len(line) < 12 || line[:9] != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
		return nil
	}
	code := 0
	for _, c := range []byte(line[9:12]) {
		if c < '0' || c > '9' {
			return nil
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 {
		return nil // 1xx: http.ReadResponse, in the informational loop
	}
	block := s[eol+2 : len(s)-2]
	status := line[9:]
	if reuse != nil {
		fields, ok := httpwire.AppendFields(reuse.fields[:0], block)
		resp := &reuse.resp
		if ok {
			fields, ok = plainHead(resp, fields, status, code, req)
		}
		reuse.fields = fields
		if !ok {
			return nil
		}
		return resp
	}
	var local [32]httpwire.Field // the list, on the stack, for the map
	fields, ok := httpwire.AppendFields(local[:0], block)
	resp := new(http.Response)
	if ok {
		fields, ok = plainHead(resp, fields, status, code, req)
	}
	if !ok {
		return nil
	}
	resp.Header = httpwire.Header(fields)
	return resp
}

// plainHead sets resp from a head's status and fields, and reports
// whether the head is the plain kind; the fields come back with the
// Cache-Control a lone Pragma: no-cache brings.
func plainHead(resp *http.Response, fields []httpwire.Field, status string, code int, req *http.Request) ([]httpwire.Field, bool) {
	*resp = http.Response{
		Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Request: req, ContentLength: -1,
	}
	ncl, pragma, seenPragma, cacheControl := 0, false, false, false
	for _, f := range fields {
		switch f.Name {
		case "Transfer-Encoding", "Trailer":
			return fields, false
		case "Content-Length":
			n, err := strconv.ParseUint(f.Value, 10, 63)
			if ncl++; ncl > 1 || err != nil {
				return fields, false
			}
			resp.ContentLength = int64(n)
		case "Connection":
			resp.Close = resp.Close || httpguts.HeaderValuesContainsToken([]string{f.Value}, "close")
		case "Pragma":
			// As the header map's first Pragma value.
			if !seenPragma {
				pragma, seenPragma = f.Value == "no-cache", true
			}
		case "Cache-Control":
			cacheControl = true
		}
	}
	if req.Method != http.MethodHead {
		if !bodyAllowed(code) {
			resp.ContentLength = 0
		} else if resp.ContentLength < 0 {
			return fields, false // delimited by the close
		}
	}
	if pragma && !cacheControl {
		fields = append(fields, httpwire.Field{Name: "Cache-Control", Value: "no-cache"})
	}
	return fields, true
}
