package services

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"mime/multipart"
	"strconv"
	"strings"
	"testing"
)

func testPNG(t *testing.T, seed uint8) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	img.Set(1, 1, color.NRGBA{seed, 2, 3, 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMediaUploadImmutableURL(t *testing.T) {
	e := newEnv(t, 2, func(c *Config) { c.MaxUpload = 64 << 10 })
	alice := e.user("alice")
	data := testPNG(t, 7)
	sum := sha256.Sum256(data)
	wantURL := "/static/media/" + hex.EncodeToString(sum[:]) + ".png"

	r := e.must(e.do(0, "POST", "/api/media", alice, data, "Content-Type", "image/png"), 201)
	var mv MediaView
	r.json(t, &mv)
	if mv.URL != wantURL || !mv.Created || mv.ContentType != "image/png" || mv.Size != int64(len(data)) {
		t.Fatalf("upload answer %+v, want url %s", mv, wantURL)
	}

	// Served by the other instance too, with the immutable class.
	r = e.must(e.do(1, "GET", mv.URL, nil, nil), 200)
	if !bytes.Equal(r.body, data) {
		t.Fatal("served bytes differ from the upload")
	}
	if cc := r.header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
		t.Fatalf("media cache-control %q", cc)
	}
	if ct := r.header.Get("Content-Type"); ct != "image/png" {
		t.Fatalf("media content-type %q", ct)
	}
	etag := r.header.Get("ETag")
	if etag != `"`+mv.SHA256+`"` || !strings.Contains(r.header.Get("Surrogate-Key"), "media-"+mv.SHA256) {
		t.Fatalf("etag %q, surrogate %q", etag, r.header.Get("Surrogate-Key"))
	}
	e.must(e.do(0, "GET", mv.URL, nil, nil, "If-None-Match", etag), 304)
	r = e.must(e.do(0, "GET", mv.URL, nil, nil, "Range", "bytes=0-7"), 206)
	if !bytes.Equal(r.body, data[:8]) {
		t.Fatal("range body")
	}
	r = e.must(e.do(0, "HEAD", mv.URL, nil, nil), 200)
	if len(r.body) != 0 || r.header.Get("Content-Length") != strconv.Itoa(len(data)) {
		t.Fatalf("HEAD: %d bytes, length %q", len(r.body), r.header.Get("Content-Length"))
	}

	// The same bytes again: same URL, not created.
	r = e.must(e.do(1, "POST", "/api/media", e.user("bob"), data), 200)
	r.json(t, &mv)
	if mv.URL != wantURL || mv.Created {
		t.Fatalf("re-upload %+v", mv)
	}

	// Multipart form upload.
	other := testPNG(t, 9)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("caption", "ignored")
	fw, _ := mw.CreateFormFile("file", "pic.png")
	_, _ = fw.Write(other)
	_ = mw.Close()
	r = e.must(e.do(0, "POST", "/api/media", alice, body.Bytes(), "Content-Type", mw.FormDataContentType()), 201)
	r.json(t, &mv)
	sum = sha256.Sum256(other)
	if mv.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("multipart sha %s", mv.SHA256)
	}

	tests := []struct {
		name string
		body []byte
		hdr  []string
		want int
	}{
		{"text", []byte("hello, not an image"), nil, 400},
		{"empty", []byte{}, nil, 400},
		{"png magic, broken body", append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0}, 64)...), nil, 400},
		{"too large", append(append([]byte{}, data...), make([]byte, 80<<10)...), nil, 413},
		{"multipart without file", []byte("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--\r\n"), []string{"Content-Type", "multipart/form-data; boundary=x"}, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.must(e.do(0, "POST", "/api/media", alice, tc.body, tc.hdr...), tc.want)
		})
	}
	e.must(e.do(0, "POST", "/api/media", nil, data), 401)

	for _, p := range []string{
		"/static/media/" + strings.Repeat("a", 64) + ".png",
		"/static/media/" + strings.Repeat("A", 64) + ".png",
		"/static/media/" + mv.SHA256 + ".exe",
		"/static/media/..%2f..%2fetc%2fpasswd",
		"/static/media/x",
	} {
		e.must(e.do(0, "GET", p, nil, nil), 404)
	}
}

func TestStaticAssetsAndHealth(t *testing.T) {
	e := newEnv(t, 1, nil)
	tests := []struct {
		path, ct string
	}{
		{"/static/app.css", "text/css; charset=utf-8"},
		{"/static/app.js", "text/javascript; charset=utf-8"},
		{"/static/index.html", "text/html; charset=utf-8"},
		{"/static/logo.png", "image/png"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			r := e.must(e.do(0, "GET", tc.path, nil, nil), 200)
			if r.header.Get("Content-Type") != tc.ct || len(r.body) == 0 {
				t.Fatalf("content-type %q, %d bytes", r.header.Get("Content-Type"), len(r.body))
			}
			if cc := r.header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=86400, s-maxage=604800") {
				t.Fatalf("cache-control %q", cc)
			}
			name := strings.TrimPrefix(tc.path, "/static/")
			if sk := r.header.Get("Surrogate-Key"); sk != "static static-"+name {
				t.Fatalf("surrogate key %q", sk)
			}
			e.must(e.do(0, "GET", tc.path, nil, nil, "If-None-Match", r.header.Get("ETag")), 304)
			e.must(e.do(0, "GET", tc.path, nil, nil, "If-Modified-Since", r.header.Get("Last-Modified")), 304)
		})
	}
	r := e.must(e.do(0, "GET", "/static/logo.png", nil, nil), 200)
	if _, err := png.Decode(bytes.NewReader(r.body)); err != nil {
		t.Fatalf("logo is not a PNG: %v", err)
	}
	r = e.must(e.do(0, "GET", "/static/missing.css", nil, nil), 404)
	if !strings.Contains(string(r.body), `"code":"not_found"`) {
		t.Fatalf("404 body %s", r.body)
	}
	e.must(e.do(0, "GET", "/static/", nil, nil), 404)
	e.must(e.do(0, "GET", "/nothing/here", nil, nil), 404)
	r = e.must(e.do(0, "PUT", "/api/tweets/1", e.user("alice"), nil), 405)
	if !strings.Contains(string(r.body), `"code":"method_not_allowed"`) || !strings.Contains(r.header.Get("Allow"), "DELETE") {
		t.Fatalf("405: %s, Allow %q", r.body, r.header.Get("Allow"))
	}
	r = e.must(e.do(0, "GET", "/api/nope", nil, nil), 404)
	if !strings.Contains(string(r.body), `"code":"not_found"`) {
		t.Fatalf("404 body %s", r.body)
	}
	r = e.must(e.do(0, "GET", "/healthz", nil, nil), 200)
	if !strings.Contains(string(r.body), `"instance":"a"`) || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("healthz %s %q", r.body, r.header.Get("Cache-Control"))
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	e := newEnv(t, 1, nil)
	good := Config{Store: e.store, SigningKey: e.key, IdentitySecret: testSecret}
	if _, err := New(good); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no store", func(c *Config) { c.Store = nil }},
		{"no key", func(c *Config) { c.SigningKey = nil }},
		{"short secret", func(c *Config) { c.IdentitySecret = []byte("short") }},
		{"bad cost", func(c *Config) { c.BcryptCost = 99 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			if _, err := New(c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
