package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"
)

func TestRoutingAndTransforms(t *testing.T) {
	e := newEnv(t, envOpts{route: RouteConfig{
		Methods:     []string{"GET", "post"},
		Paths:       []string{"/api/users/{id}", "/api/posts/**", "/api/%2Fodd/*"},
		StripPrefix: "/api",
		Rewrite:     &RewriteConfig{Match: `^/users/(\w+)$`, Replace: "/v2/users/$1"},
		Auth:        AuthConfig{Mode: ModeNone},
		Request: RequestTransform{
			HeaderOps: HeaderOps{Add: map[string]string{"X-Added": "a"}, Set: map[string]string{"X-Client": "gw"}, Remove: []string{"X-Secret"}},
			Query:     map[string]string{"api_version": "2"},
		},
		Response: HeaderOps{Set: map[string]string{"X-Frame-Options": "DENY"}, Remove: []string{"Server-Timing"}},
	}})
	tests := []struct {
		name, method, path string
		status             int
		upstream           string // path the origin saw
		query              string
	}{
		{"rewritten", "GET", "/api/users/42", 200, "/v2/users/42", "api_version=2"},
		{"stripped", "POST", "/api/posts/1/comments?x=1", 200, "/posts/1/comments", "x=1&api_version=2"},
		{"HEAD allowed with GET", "HEAD", "/api/posts/1", 200, "/posts/1", "api_version=2"},
		{"query injection overrides client", "GET", "/api/posts?api_version=9", 200, "/posts", "api_version=2"},
		{"wrong method", "DELETE", "/api/users/42", 405, "", ""},
		{"no pattern match", "GET", "/api/other", 404, "", ""},
		{"one-segment wildcard is one segment", "GET", "/api/users/42/extra", 404, "", ""},
		// Without encoded_slashes a one-segment wildcard holds no %2F:
		// this origin (net/http's r.URL.Path) would read "/users/a/b".
		{"encoded slash not in a one-segment wildcard", "GET", "/api/users/a%2Fb", 404, "", ""},
		{"encoded slash under a rest wildcard", "GET", "/api/posts/a%2Fb", 200, "/posts/a/b", "api_version=2"},
		// Escaped unreserved characters are the same path (RFC 3986
		// §6.2.2.2), as the edge's router reads it: paths, strip_prefix
		// and rewrite see through them, so "/%61pi" cannot dodge the strip
		// or the rewrite and reach the origin unchanged.
		{"escaped letters in the prefix", "GET", "/%61pi/posts/1", 200, "/posts/1", "api_version=2"},
		{"escaped letters in a literal", "GET", "/api/p%6F%73ts/1", 200, "/posts/1", "api_version=2"},
		{"escaped letters before a rewrite", "GET", "/api/%75sers/42", 200, "/v2/users/42", "api_version=2"},
		{"lower-case escape of a reserved character", "GET", "/api/%2fodd/x", 200, "//odd/x", "api_version=2"},
		{"escaped slash is not a separator", "GET", "/api%2Fposts/1", 404, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.origin.count()
			r := e.do(tc.method, tc.path, map[string]string{"X-Secret": "s", "X-Client": "c"}, nil)
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", r.StatusCode, tc.status)
			}
			switch tc.status {
			case 405:
				if r.Header.Get("Allow") != "GET, POST, HEAD" || errCode(t, r) != "method_not_allowed" {
					t.Errorf("Allow %q", r.Header.Get("Allow"))
				}
			case 404:
				if errCode(t, r) != "no_route" {
					t.Error("wrong code")
				}
			}
			if tc.status != 200 {
				if e.origin.count() != before {
					t.Error("refused request reached the origin")
				}
				return
			}
			o := e.origin.last(t)
			if o.Path != tc.upstream || o.RawQuery != tc.query {
				t.Errorf("origin saw %s?%s, want %s?%s", o.Path, o.RawQuery, tc.upstream, tc.query)
			}
			if o.Header.Get("X-Added") != "a" || o.Header.Get("X-Client") != "gw" || o.Header.Get("X-Secret") != "" {
				t.Errorf("request headers %v", o.Header)
			}
			if o.Header.Get("X-Request-Id") == "" {
				t.Error("request id not propagated")
			}
			if o.IDErr != nil {
				t.Errorf("signature over the rewritten path fails: %v", o.IDErr)
			}
			if r.Header.Get("X-Frame-Options") != "DENY" || r.Header.Get("Server-Timing") != "" || r.Header.Get("X-Origin") != "yes" {
				t.Errorf("response headers %v", r.Header)
			}
		})
	}
}

func TestPatterns(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
		slashes       bool // encoded_slashes
	}{
		{"/", "/", true, false},
		{"/", "/a", false, false},
		{"/a/{id}", "/a/1", true, false},
		{"/a/{id}", "/a/", false, false},
		{"/a/{id}", "/a", false, false},
		{"/a/*/c", "/a/b/c", true, false},
		{"/a/*/c", "/a/b/d", false, false},
		{"/a/{rest...}", "/a", true, false},
		{"/a/{rest...}", "/a/b/c/", true, false},
		{"/a/**", "/ab", false, false},
		{"/**", "/anything/at/all", true, false},
		{"/a", "/a/", false, false},
		{"/a/", "/a/", true, false},
		{"/a/{id}", "/a/x%2Fy", false, false},
		{"/a/{id}", "/a/x%2Fy", true, true},
		{"/a/*/c", "/a/%2F/c", false, false},
		{"/a/**", "/a/x%2Fy", true, false},
		{"/a%2Fb/{id}", "/a%2Fb/1", true, false},
	}
	for _, tc := range tests {
		pt, err := compilePattern(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := pt.match(tc.path, tc.slashes); got != tc.want {
			t.Errorf("%s ~ %s (encoded_slashes %v) = %v, want %v", tc.pattern, tc.path, tc.slashes, got, tc.want)
		}
	}
	for _, bad := range []string{"a", "/a/**/b", "/a{b}", "/x*"} {
		if _, err := compilePattern(bad); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t, envOpts{route: RouteConfig{
		Methods: []string{"GET", "PUT"},
		CORS:    &CORSConfig{AllowOrigins: []string{"https://app.demo.test"}, AllowCredentials: true},
	}})
	// Preflight: answered by the gateway, no credentials needed.
	r := e.do("OPTIONS", "/x", map[string]string{"Origin": "https://app.demo.test", "Access-Control-Request-Method": "PUT"}, nil)
	if r.StatusCode != 204 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.demo.test" ||
		r.Header.Get("Access-Control-Allow-Methods") != "GET, PUT" || r.Header.Get("Access-Control-Allow-Credentials") != "true" ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") || r.Header.Get("Access-Control-Max-Age") != "600" {
		t.Fatalf("preflight: %d %v", r.StatusCode, r.Header)
	}
	if e.origin.count() != 0 {
		t.Fatal("preflight reached the origin")
	}
	r = e.do("OPTIONS", "/x", map[string]string{"Origin": "https://evil.test", "Access-Control-Request-Method": "PUT"}, nil)
	if r.StatusCode != 403 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from a foreign origin: %d %v", r.StatusCode, r.Header)
	}
	// Actual request: still authenticated; the 401 carries CORS fields so
	// the browser app can read it.
	r = e.do("GET", "/x", map[string]string{"Origin": "https://app.demo.test"}, nil)
	if r.StatusCode != 401 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.demo.test" || !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "RateLimit") {
		t.Fatalf("CORS request: %d %v", r.StatusCode, r.Header)
	}
	r = e.do("DELETE", "/x", nil, nil)
	if r.Header.Get("Vary") != "Origin" {
		t.Errorf("Vary without Origin = %q, want Origin", r.Header.Get("Vary"))
	}
	if r.StatusCode != 405 || r.Header.Get("Allow") != "GET, PUT, HEAD, OPTIONS" {
		t.Fatalf("405 Allow with CORS: %q", r.Header.Get("Allow"))
	}
}

// chunked hides the length so the body is streamed with chunked encoding.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestMaxBody(t *testing.T) {
	e := newEnv(t, envOpts{route: RouteConfig{Auth: AuthConfig{Mode: ModeNone}, MaxBody: 1024}})
	tests := []struct {
		name   string
		body   io.Reader
		status int
	}{
		{"at limit, with length", strings.NewReader(strings.Repeat("a", 1024)), 200},
		{"over limit, with length", strings.NewReader(strings.Repeat("a", 1025)), 413},
		{"at limit, chunked", chunked{strings.NewReader(strings.Repeat("a", 1024))}, 200},
		{"over limit, chunked", chunked{strings.NewReader(strings.Repeat("a", 5000))}, 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/upload", nil, tc.body)
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tc.status, bodyOf(r))
			}
			if tc.status == 413 && errCode(t, r) != "body_too_large" {
				t.Error("wrong code")
			}
			if tc.status == 200 && len(e.origin.last(t).Body) != 1024 {
				t.Errorf("origin got %d bytes", len(e.origin.last(t).Body))
			}
		})
	}
}

func TestTimeoutAndConcurrency(t *testing.T) {
	o := newOrigin(t)
	o.delay = 300 * time.Millisecond
	e := newEnv(t, envOpts{origin: o, route: RouteConfig{Auth: AuthConfig{Mode: ModeNone}, Timeout: units.Duration(50 * time.Millisecond)}})
	if r := e.do("GET", "/slow", nil, nil); r.StatusCode != 504 {
		t.Fatalf("timeout: %d", r.StatusCode)
	}

	// Concurrency: two requests hold both slots at the origin; while they
	// do, further requests are refused; once released, both complete.
	o2 := newOrigin(t)
	o2.gate = make(chan struct{})
	e2 := newEnv(t, envOpts{origin: o2, route: RouteConfig{Auth: AuthConfig{Mode: ModeNone}, Concurrency: 2}})
	var wg sync.WaitGroup
	held := make(chan int, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			held <- e2.do("GET", "/busy", nil, nil).StatusCode
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); o2.count() < 2; {
		if time.Now().After(deadline) {
			t.Fatal("held requests did not reach the origin")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 3 {
		r := e2.do("GET", "/busy", nil, nil)
		if r.StatusCode != 503 || r.Header.Get("Retry-After") != "1" || errCode(t, r) != "concurrency_limited" {
			t.Fatalf("over the cap: %d %v", r.StatusCode, r.Header)
		}
	}
	close(o2.gate)
	wg.Wait()
	close(held)
	for s := range held {
		if s != 200 {
			t.Fatalf("held request: %d", s)
		}
	}
	if r := e2.do("GET", "/busy", nil, nil); r.StatusCode != 200 {
		t.Fatalf("slot not released: %d", r.StatusCode)
	}
}

// TestEarlyHintsPassThrough: a 103 from upstream does not swallow the
// final status when response headers are being edited.
func TestEarlyHintsPassThrough(t *testing.T) {
	st, _ := NewState(StateOptions{})
	cfg := Config{}
	cfg.SetDefaults()
	g, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("X-Internal", "1")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "made")
	})
	h, err := g.Handler("hints", RouteConfig{Auth: AuthConfig{Mode: ModeNone}, Response: HeaderOps{Remove: []string{"X-Internal"}}}, next)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var got1xx []int
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { got1xx = append(got1xx, code); return nil },
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || len(got1xx) != 1 || got1xx[0] != 103 || resp.Header.Get("X-Internal") != "" {
		t.Fatalf("status %d, 1xx %v, headers %v", resp.StatusCode, got1xx, resp.Header)
	}
}

// A plain OPTIONS on a CORS route whose methods leave OPTIONS out is
// answered with the Allow header that advertises it, not a 405; a
// preflight for a path the route does not serve is a 404, not a policy.
func TestCORSPlainOptionsAndUnknownPath(t *testing.T) {
	e := newEnv(t, envOpts{route: RouteConfig{
		Methods: []string{"GET"},
		Paths:   []string{"/api/**"},
		CORS:    &CORSConfig{AllowOrigins: []string{"https://app.demo.test"}},
	}})
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		status  int
		allow   string
		acao    string
	}{
		{"plain OPTIONS", "/api/x", nil, 204, "GET, HEAD, OPTIONS", ""},
		{"plain OPTIONS with Origin", "/api/x", map[string]string{"Origin": "https://app.demo.test"}, 204, "GET, HEAD, OPTIONS", "https://app.demo.test"},
		{"preflight", "/api/x", map[string]string{"Origin": "https://app.demo.test", "Access-Control-Request-Method": "GET"}, 204, "", "https://app.demo.test"},
		{"preflight, unknown path", "/other", map[string]string{"Origin": "https://app.demo.test", "Access-Control-Request-Method": "GET"}, 404, "", ""},
		{"plain OPTIONS, unknown path", "/other", nil, 404, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("OPTIONS", tc.path, tc.headers, nil)
			if r.StatusCode != tc.status || r.Header.Get("Allow") != tc.allow || r.Header.Get("Access-Control-Allow-Origin") != tc.acao {
				t.Fatalf("got %d Allow=%q ACAO=%q, want %d %q %q", r.StatusCode, r.Header.Get("Allow"),
					r.Header.Get("Access-Control-Allow-Origin"), tc.status, tc.allow, tc.acao)
			}
		})
	}
	if n := e.origin.count(); n != 0 {
		t.Fatalf("%d OPTIONS requests reached the origin", n)
	}
}

// A body cut at max_body is a 413 whatever the upstream answers: a backend
// that answered 200 (or 400) to the truncated stream never saw the request
// the client sent.
func TestMaxBodyTrippedOverridesUpstreamStatus(t *testing.T) {
	st, err := NewState(StateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{}
	cfg.SetDefaults()
	g, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, upstream := range []int{200, 201, 400, 502} {
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // stops at the limit's error
			w.WriteHeader(upstream)
			_, _ = io.WriteString(w, "upstream body")
		})
		h, err := g.Handler("up", RouteConfig{Auth: AuthConfig{Mode: ModeNone}, MaxBody: 1024}, next)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "/up", chunked{strings.NewReader(strings.Repeat("a", 5000))})
		r.ContentLength = -1
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 413 || strings.Contains(w.Body.String(), "upstream body") {
			t.Errorf("upstream %d: got %d %q, want 413 without the upstream's body", upstream, w.Code, w.Body.String())
		}
	}
}

// TestHeaderEditValuesReachOrigin: values Validate accepts (tab, UTF-8
// text) go through on both sides.
func TestHeaderEditValuesReachOrigin(t *testing.T) {
	rc := RouteConfig{
		Auth:     AuthConfig{Mode: ModeNone},
		Request:  RequestTransform{HeaderOps: HeaderOps{Set: map[string]string{"X-A": "a\tb ü"}}},
		Response: HeaderOps{Set: map[string]string{"X-B": "c\td ü"}},
	}
	rc.SetDefaults()
	if err := rc.Validate(); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{route: rc})
	r := e.do("GET", "/x", nil, nil)
	if r.StatusCode != 200 || r.Header.Get("X-B") != "c\td ü" {
		t.Fatalf("status %d, X-B %q", r.StatusCode, r.Header.Get("X-B"))
	}
	if v := e.origin.last(t).Header.Get("X-A"); v != "a\tb ü" {
		t.Fatalf("origin X-A %q", v)
	}
}

// TestQueryInjectionKeepsClientQuery: request.query replaces the named
// parameters and leaves the others as the client wrote them (order and
// escaping: origins may check a signed query string); a client value for
// an injected name is removed however it is spelled.
func TestQueryInjectionKeepsClientQuery(t *testing.T) {
	e := newEnv(t, envOpts{route: RouteConfig{
		Auth:    AuthConfig{Mode: ModeNone},
		Request: RequestTransform{Query: map[string]string{"source": "edge", "v": "2 b"}},
	}})
	for _, tc := range []struct{ in, want string }{
		{"", "source=edge&v=2+b"},
		{"b=2&a=1", "b=2&a=1&source=edge&v=2+b"},
		{"q=a%20b+c&empty&=x", "q=a%20b+c&empty&=x&source=edge&v=2+b"},
		{"source=evil&x=1", "x=1&source=edge&v=2+b"},
		{"sourc%65=evil&V=1", "V=1&source=edge&v=2+b"},
		{"a=1&&source=x&b=%2F", "a=1&b=%2F&source=edge&v=2+b"},
		{"source", "source=edge&v=2+b"},
	} {
		if r := e.do("GET", "/x?"+tc.in, nil, nil); r.StatusCode != 200 {
			t.Fatalf("%q: status %d", tc.in, r.StatusCode)
		}
		if got := e.origin.last(t); got.RawQuery != tc.want || got.IDErr != nil {
			t.Errorf("%q: origin saw %q (identity %v), want %q", tc.in, got.RawQuery, got.IDErr, tc.want)
		}
	}
}

// TestStripAndRewriteSeeThroughEscapes: without paths to refuse it, an
// escaped spelling of the prefix ("/%61pi") used to skip strip_prefix and
// rewrite and reach the origin as "/api/…", a path space the route never
// meant to expose.
func TestStripAndRewriteSeeThroughEscapes(t *testing.T) {
	e := newEnv(t, envOpts{route: RouteConfig{
		StripPrefix: "/api",
		Rewrite:     &RewriteConfig{Match: `^/internal/(.*)$`, Replace: "/public/$1"},
		Auth:        AuthConfig{Mode: ModeNone},
	}})
	for path, want := range map[string]string{
		"/%61pi/x":              "/x",
		"/%41pi/x":              "/Api/x", // not the same path: case matters
		"/api/%69nternal/a":     "/public/a",
		"/api/internal/%7Euser": "/public/~user",
		"/api/a%2Fb":            "/a/b",
	} {
		if r := e.do("GET", path, nil, nil); r.StatusCode != 200 {
			t.Fatalf("%s: status %d", path, r.StatusCode)
		}
		if o := e.origin.last(t); o.Path != want || o.IDErr != nil {
			t.Errorf("%s: origin saw %q (identity %v), want %q", path, o.Path, o.IDErr, want)
		}
	}
}

// TestEncodedSlashesOptIn: with encoded_slashes a one-segment wildcard
// takes a segment holding %2F (ids such as GitLab's "group%2Fproject"),
// and the origin gets it escaped as sent.
func TestEncodedSlashesOptIn(t *testing.T) {
	e := newEnv(t, envOpts{route: RouteConfig{
		Paths:          []string{"/api/projects/{id}"},
		EncodedSlashes: true,
		Auth:           AuthConfig{Mode: ModeNone},
	}})
	if r := e.do("GET", "/api/projects/group%2Fproject", nil, nil); r.StatusCode != 200 {
		t.Fatalf("status %d, want 200", r.StatusCode)
	}
	if o := e.origin.last(t); o.RawPath != "/api/projects/group%2Fproject" {
		t.Fatalf("origin saw raw path %q", o.RawPath)
	}
}
