package cdn

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

func digits(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteByte(byte('0' + i%10))
	}
	return b.String()
}

func TestRanges(t *testing.T) {
	body := digits(1000)
	e := newEnv(t, validating(body, `"r1"`, "Cache-Control: max-age=60", "Content-Type: application/octet-stream"))
	// A range on a miss fetches the whole object once and answers the range.
	r := e.get("/r", "Range: bytes=0-9")
	if r.StatusCode != 206 || r.body != body[:10] || r.Header.Get("Content-Range") != "bytes 0-9/1000" {
		t.Fatalf("miss range: %d %q %q", r.StatusCode, r.body, r.Header.Get("Content-Range"))
	}
	if e.origin.lastHeader().Get("Range") != "" {
		t.Fatal("range forwarded to origin on a fill")
	}
	r = e.get("/r", "Range: bytes=990-")
	if r.StatusCode != 206 || r.body != body[990:] || r.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("hit range: %d %q %q", r.StatusCode, r.body, r.Header.Get("X-Cache"))
	}
	// Multiple ranges: multipart/byteranges.
	r = e.get("/r", "Range: bytes=0-1,5-6")
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if r.StatusCode != 206 || mt != "multipart/byteranges" {
		t.Fatalf("multi: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(strings.NewReader(r.body), params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, string(b))
	}
	if len(parts) != 2 || parts[0] != "01" || parts[1] != "56" {
		t.Fatalf("parts %q", parts)
	}
	// If-Range: a matching validator gets the range, another the full body.
	r = e.get("/r", "Range: bytes=0-4", `If-Range: "r1"`)
	if r.StatusCode != 206 || r.body != "01234" {
		t.Fatalf("if-range match: %d %q", r.StatusCode, r.body)
	}
	r = e.get("/r", "Range: bytes=0-4", `If-Range: "old"`)
	if r.StatusCode != 200 || r.body != body {
		t.Fatalf("if-range mismatch: %d %d", r.StatusCode, len(r.body))
	}
	r = e.get("/r", "Range: bytes=5000-")
	if r.StatusCode != 416 {
		t.Fatalf("unsatisfiable: %d", r.StatusCode)
	}
	if e.hits() != 1 {
		t.Fatalf("origin hits %d", e.hits())
	}
}

func TestRangeLargerThanLimitPassesThrough(t *testing.T) {
	body := digits(4096)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(body))
	}, withConfig(func(c *Config) { c.RangeFetchLimit = 1024 }))
	r := e.get("/big", "Range: bytes=10-19")
	if r.StatusCode != 206 || r.body != body[10:20] {
		t.Fatalf("%d %q", r.StatusCode, r.body)
	}
	if e.origin.lastHeader().Get("Range") != "bytes=10-19" {
		t.Fatalf("range not passed through: %v", e.origin.lastHeader())
	}
	if e.cache.Objects() != 0 {
		t.Fatal("stored")
	}
}

func decode(t *testing.T, enc, body string) string {
	t.Helper()
	var rd io.Reader
	switch enc {
	case "gzip":
		z, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		rd = z
	case "br":
		rd = brotli.NewReader(strings.NewReader(body))
	case "zstd":
		z, err := zstd.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer z.Close()
		rd = z
	default:
		return body
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		t.Fatalf("decode %s: %v", enc, err)
	}
	return string(b)
}

func TestCompressionNegotiation(t *testing.T) {
	css := strings.Repeat("body { color: red; } .a { margin: 0 } ", 300)
	e := newEnv(t, validating(css, `"css1"`, "Cache-Control: max-age=600", "Content-Type: text/css; charset=utf-8"))
	e.get("/app.css") // fill (identity)
	cases := []struct {
		accept, want string
	}{
		{"br", "br"},
		{"gzip", "gzip"},
		{"zstd", "zstd"},
		{"gzip, deflate, br, zstd", "br"},
		{"gzip;q=1, br;q=0.5", "gzip"},
		{"identity", ""},
		{"br;q=0, gzip;q=0", ""},
		{"*", "br"},
		{"", ""},
	}
	for _, tc := range cases {
		for round := 0; round < 2; round++ {
			var hdr []string
			if tc.accept != "" {
				hdr = append(hdr, "Accept-Encoding: "+tc.accept)
			}
			r := e.get("/app.css", hdr...)
			if got := r.Header.Get("Content-Encoding"); got != tc.want {
				t.Fatalf("AE %q: Content-Encoding %q, want %q", tc.accept, got, tc.want)
			}
			if decode(t, tc.want, r.body) != css {
				t.Fatalf("AE %q: round trip differs", tc.accept)
			}
			if !strings.Contains(r.Header.Get("Vary"), "Accept-Encoding") {
				t.Fatalf("no Vary: %q", r.Header.Get("Vary"))
			}
			if tc.want != "" {
				if r.Header.Get("ETag") != `"css1-`+tc.want+`"` {
					t.Fatalf("etag %q", r.Header.Get("ETag"))
				}
				if r.Header.Get("Content-Length") == "" || len(r.body) >= len(css) {
					t.Fatalf("length %q body %d", r.Header.Get("Content-Length"), len(r.body))
				}
				// The suffixed validator revalidates that rendition.
				c := e.get("/app.css", "Accept-Encoding: "+tc.accept, `If-None-Match: "css1-`+tc.want+`"`)
				if c.StatusCode != 304 {
					t.Fatalf("conditional on rendition: %d", c.StatusCode)
				}
			}
		}
	}
	// Each rendition was computed once.
	for _, enc := range []string{"br", "gzip", "zstd"} {
		if got := e.metric("outpost_cache_compressed_renditions_total", "encoding", enc); got != 1 {
			t.Errorf("%s renditions %v, want 1", enc, got)
		}
	}
	// Ranges are served on the identity body.
	r := e.get("/app.css", "Accept-Encoding: br", "Range: bytes=0-3")
	if r.StatusCode != 206 || r.Header.Get("Content-Encoding") != "" || r.body != css[:4] {
		t.Fatalf("range: %d %q %q", r.StatusCode, r.Header.Get("Content-Encoding"), r.body)
	}
	if e.hits() != 1 {
		t.Fatalf("origin hits %d", e.hits())
	}
}

func TestCompressionSkipped(t *testing.T) {
	cases := []struct {
		name string
		fn   http.HandlerFunc
	}{
		{"tiny", static("small", "Cache-Control: max-age=60", "Content-Type: text/plain")},
		{"image", static(strings.Repeat("x", 5000), "Cache-Control: max-age=60", "Content-Type: image/png")},
		{"no-transform", static(strings.Repeat("x", 5000), "Cache-Control: max-age=60, no-transform", "Content-Type: text/plain")},
		{"already encoded", func(w http.ResponseWriter, r *http.Request) {
			var buf bytes.Buffer
			z := gzip.NewWriter(&buf)
			z.Write([]byte(strings.Repeat("x", 5000)))
			z.Close()
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(buf.Bytes())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.fn)
			e.get("/x")
			r := e.get("/x", "Accept-Encoding: br")
			if r.Header.Get("X-Cache") != "HIT" {
				t.Fatalf("not a hit: %q", r.Header.Get("X-Cache"))
			}
			if ce := r.Header.Get("Content-Encoding"); ce == "br" {
				t.Fatalf("compressed")
			}
		})
	}
}

func TestPurge(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Language")
		if strings.HasPrefix(r.URL.Path, "/static/") {
			w.Header().Set("Surrogate-Key", "static "+strings.TrimPrefix(r.URL.Path, "/static/"))
		}
		io.WriteString(w, r.URL.Path)
	})
	host := "Host: www.example.com"
	fill := func() {
		for _, p := range []string{"/static/app.css", "/static/app.js", "/img/logo.png", "/index.html"} {
			for _, lang := range []string{"en", "fr"} {
				e.get(p, host, "Accept-Language: "+lang)
			}
		}
	}
	fill()
	// A miss's object is committed after its last byte went to the
	// client: wait for the index, do not race it.
	stored := func(n int64) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d objects stored", n), func() bool { return e.cache.Objects() == n })
	}
	stored(8)
	post := func(body string) (int, map[string]any) {
		res, err := e.client.Post(e.front.URL+"/", "", nil)
		if err == nil {
			res.Body.Close()
		}
		srv := e.cache.PurgeHandler()
		req, _ := http.NewRequest("POST", "/v1/purge", strings.NewReader(body))
		rec := newRecorder()
		srv.ServeHTTP(rec, req)
		var out map[string]any
		json.Unmarshal(rec.body.Bytes(), &out)
		return rec.code, out
	}
	// The POST above went to "/" on the cache: an unsafe method, harmless here.
	code, out := post(`{"urls": ["http://www.example.com/static/app.css"]}`)
	if code != 200 || out["purged"] != 2.0 {
		t.Fatalf("url purge: %d %v", code, out)
	}
	if r := e.get("/static/app.css", host, "Accept-Language: en"); r.Header.Get("X-Cache") != "MISS" {
		t.Fatal("purged url still cached")
	}
	stored(7) // 8, less the two variants purged, and this one again
	if r := e.get("/static/app.js", host, "Accept-Language: en"); r.Header.Get("X-Cache") != "HIT" {
		t.Fatal("other url purged")
	}
	_, out = post(`{"tags": ["app.js"]}`)
	if out["purged"] != 2.0 {
		t.Fatalf("tag purge: %v", out)
	}
	_, out = post(`{"prefixes": ["http://WWW.example.com/static/"]}`)
	if out["purged"] != 1.0 { // app.css en was refetched
		t.Fatalf("prefix purge: %v", out)
	}
	if r := e.get("/img/logo.png", host, "Accept-Language: fr"); r.Header.Get("X-Cache") != "HIT" {
		t.Fatal("unrelated purged")
	}
	// Soft purge: served stale while one refresh runs.
	_, out = post(`{"urls": ["https://www.example.com/img/logo.png"], "soft": true}`)
	if out["purged"] != 2.0 || out["soft"] != true {
		t.Fatalf("soft purge: %v", out)
	}
	before := e.hits()
	r := e.get("/img/logo.png", host, "Accept-Language: fr")
	if r.Header.Get("X-Cache") != "STALE" || r.body != "/img/logo.png" {
		t.Fatalf("soft purged: %q", r.Header.Get("X-Cache"))
	}
	waitFor(t, "refresh", func() bool {
		return e.get("/img/logo.png", host, "Accept-Language: fr").Header.Get("X-Cache") == "HIT"
	})
	if e.hits() != before+1 {
		t.Fatalf("refreshes %d", e.hits()-before)
	}
	_, out = post(`{"all": true}`)
	if out["purged"].(float64) < 3 || e.cache.Objects() != 0 {
		t.Fatalf("all: %v, %d left", out, e.cache.Objects())
	}
	for _, bad := range []string{`{}`, `{"urls": ["/relative"]}`, `{"bogus": 1}`, `not json`, `{"urls": ["ftp://x/y"]}`} {
		if code, _ := post(bad); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
	if code, _ := post(`{"urls": ["http://www.example.com/` + strings.Repeat("a", 1<<20) + `"]}`); code != 413 {
		t.Errorf("a body over 1 MiB: %d, want 413", code)
	}
	fill()
	e.get("/index.html", "Host: www.example.com.other.test", "Accept-Language: en")
	e.clock.Advance(time.Second)
	// A prefix naming only a host is that host's root: it does not reach
	// into hosts whose names merely start the same way.
	res, err := e.cache.Purge(t.Context(), PurgeRequest{Prefixes: []string{"http://www.example.com"}})
	if err != nil || res.Purged != 8 {
		t.Fatalf("host purge %v %v", res, err)
	}
	if r := e.get("/index.html", "Host: www.example.com.other.test", "Accept-Language: en"); r.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("a purge of host www.example.com reached www.example.com.other.test: %s", r.Header.Get("X-Cache"))
	}
}

type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func newRecorder() *recorder                    { return &recorder{h: make(http.Header), code: 200} }
func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) WriteHeader(c int)           { r.code = c }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }

// TestRangeUncacheablePassesRange: a Range request for something the cache
// may not store reaches the origin with its Range.
func TestRangeUncacheablePassesRange(t *testing.T) {
	body := digits(5000)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private")
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(body))
	})
	r := e.get("/private-video", "Range: bytes=100-109")
	if r.StatusCode != 206 || r.body != body[100:110] {
		t.Fatalf("%d %q", r.StatusCode, r.body)
	}
	if e.origin.lastHeader().Get("Range") != "bytes=100-109" {
		t.Fatal("range not passed")
	}
}
