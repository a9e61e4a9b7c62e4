package tlsedge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"
)

// newInternal builds and starts an internal-CA manager on fresh listeners.
func newInternal(t *testing.T, mutate func(*Config)) (*testEdge, *x509.CertPool) {
	t.Helper()
	return newInternalApp(t, mutate, hello)
}

// newInternalApp is newInternal serving app as the edge chain.
func newInternalApp(t *testing.T, mutate func(*Config), app http.Handler) (*testEdge, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	tlsLn, httpLn := reserveListeners(t)
	cfg := Config{
		Enabled:    true,
		Mode:       ModeInternal,
		Listen:     tlsLn.Addr().String(),
		HTTPListen: httpLn.Addr().String(),
		Names:      []string{"demo.test", "*.demo.test"},
		Internal:   InternalConfig{RootExport: filepath.Join(dir, "export", "outpost-root.pem")},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	m, err := New(cfg, Options{Logger: testLogger(t), DataDir: dir})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	e := startEdge(t, m, tlsLn, httpLn, app)
	roots := x509.NewCertPool()
	pemBytes, err := os.ReadFile(m.RootPath())
	if err != nil {
		t.Fatalf("exported root: %v", err)
	}
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("exported root %s is not PEM", m.RootPath())
	}
	return e, roots
}

func TestInternalCAServesDemoNames(t *testing.T) {
	e, roots := newInternal(t, nil)
	if got := e.m.RootPath(); !strings.HasSuffix(got, "export/outpost-root.pem") {
		t.Fatalf("RootPath = %q, want the configured export", got)
	}
	tests := []struct {
		name  string
		host  string
		proto string // "1.1", "2", "3"
	}{
		{"apex over HTTP/1.1", "demo.test", "1.1"},
		{"wildcard over HTTP/1.1", "www.demo.test", "1.1"},
		{"wildcard over HTTP/2", "static.demo.test", "2"},
		{"apex over HTTP/3", "demo.test", "3"},
		{"wildcard over HTTP/3", "api.demo.test", "3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c *http.Client
			switch tc.proto {
			case "1.1":
				c = clientFor(roots, e.tlsAddr, false)
			case "2":
				c = clientFor(roots, e.tlsAddr, true)
			case "3":
				c = h3ClientFor(t, roots, e.tlsAddr)
			}
			resp, body := fetch(t, c, "https://"+tc.host+"/x")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			wantProto := map[string]string{"1.1": "HTTP/1.1", "2": "HTTP/2.0", "3": "HTTP/3.0"}[tc.proto]
			if !strings.HasSuffix(body, "over "+wantProto) {
				t.Fatalf("body %q, want served over %s", body, wantProto)
			}
			assertServedBy(t, resp, tc.host, roots)
			if tc.proto != "3" {
				if got := resp.Header.Get("Alt-Svc"); !strings.HasPrefix(got, `h3=":`) {
					t.Fatalf("Alt-Svc = %q, want h3 advertised", got)
				}
			}
		})
	}
}

func TestDefaultSNI(t *testing.T) {
	e, roots := newInternal(t, nil)
	// A client connecting by IP sends no SNI and gets the first name's
	// certificate.
	conn, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{RootCAs: roots, ServerName: "demo.test"})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	raw, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake without SNI: %v", err)
	}
	defer raw.Close()
	if got := raw.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "demo.test" {
		t.Fatalf("no-SNI certificate covers %v, want [demo.test]", got)
	}
	// OpenSSL clients (wrk) send the dialed IP as SNI: same answer.
	ipSNI, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{InsecureSkipVerify: true, ServerName: "unknown.example"})
	if err != nil {
		t.Fatalf("handshake with an unknown SNI: %v", err)
	}
	defer ipSNI.Close()
	if got := ipSNI.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "demo.test" {
		t.Fatalf("unknown-SNI certificate covers %v, want [demo.test]", got)
	}
}

func TestInternalCARootPersists(t *testing.T) {
	dir := t.TempDir()
	ca1, err := loadOrCreateCA(dir, 24*time.Hour, time.Hour, time.Now, randReader())
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := loadOrCreateCA(dir, 24*time.Hour, time.Hour, time.Now, randReader())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca1.rootPEM, ca2.rootPEM) {
		t.Fatal("second start generated a new root instead of reusing the stored one")
	}
	st, err := os.Stat(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("root.key mode %v, want 0600", st.Mode().Perm())
	}
	// A lone key (root.pem lost) is reported, not silently replaced.
	if err := os.Remove(filepath.Join(dir, "root.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateCA(dir, 24*time.Hour, time.Hour, time.Now, randReader()); err == nil {
		t.Fatal("want an error when root.pem is missing but root.key exists")
	}
	// A corrupt root is an error too.
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateCA(dir, 24*time.Hour, time.Hour, time.Now, randReader()); err == nil {
		t.Fatal("want an error for a corrupt root.pem")
	}
}

func TestTLSVersionsRefused(t *testing.T) {
	e, roots := newInternal(t, nil)
	tests := []struct {
		version uint16
		ok      bool
	}{
		{tls.VersionTLS10, false},
		{tls.VersionTLS11, false},
		{tls.VersionTLS12, true},
		{tls.VersionTLS13, true},
	}
	for _, tc := range tests {
		t.Run(tls.VersionName(tc.version), func(t *testing.T) {
			err := handshakeVersion(e.tlsAddr, "demo.test", roots, tc.version)
			if tc.ok && err != nil {
				t.Fatalf("handshake failed: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("handshake succeeded, want refused")
			}
			if !tc.ok && !isTLSVersionError(err) {
				t.Fatalf("refused for the wrong reason: %v", err)
			}
		})
	}
}

// TestRedirect sends raw requests to the port-80 handler, so hostile
// Host headers reach it exactly as written: the redirect keeps path and
// query, never touches ACME HTTP-01 paths, and only ever points at a
// host this node serves over HTTPS.
func TestRedirect(t *testing.T) {
	e, _ := newInternal(t, func(c *Config) { c.HSTS = HSTSConfig{Enabled: true} })
	_, tlsPort, _ := strings.Cut(e.tlsAddr, ":")
	https := func(hostPath string) string { return "https://" + strings.Replace(hostPath, "/", ":"+tlsPort+"/", 1) }

	tests := []struct {
		name     string
		request  string // request line and headers, without the final CRLF
		status   int
		location string
	}{
		{"path and query kept", "GET /a/b?c=d&e=%2F HTTP/1.1\r\nHost: www.demo.test", 308, https("www.demo.test/a/b?c=d&e=%2F")},
		{"POST keeps method via 308", "POST /form HTTP/1.1\r\nHost: demo.test\r\nContent-Length: 4\r\n\r\nbody", 308, https("demo.test/form")},
		{"port in Host replaced", "GET / HTTP/1.1\r\nHost: demo.test:8080", 308, https("demo.test/")},
		{"case and trailing dot normalized", "GET /x HTTP/1.1\r\nHost: WWW.Demo.Test.", 308, https("www.demo.test/x")},
		{"double slash path stays on the host", "GET //evil.example/x HTTP/1.1\r\nHost: demo.test", 308, https("demo.test//evil.example/x")},
		{"IP of this listener", "GET /x HTTP/1.1\r\nHost: 127.0.0.1", 308, https("127.0.0.1/x")},
		{"unknown name", "GET / HTTP/1.1\r\nHost: evil.example", 421, ""},
		{"wildcard covers one label only", "GET / HTTP/1.1\r\nHost: a.b.demo.test", 421, ""},
		{"other IPv4 literal", "GET / HTTP/1.1\r\nHost: 203.0.113.9:80", 421, ""},
		{"IPv6 literal with port", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80", 421, ""},
		{"IPv6 literal without port", "GET / HTTP/1.1\r\nHost: [::1]", 421, ""},
		{"absolute-form URI names the host", "GET http://evil.example/x HTTP/1.1\r\nHost: demo.test", 421, ""},
		{"userinfo trick", "GET / HTTP/1.1\r\nHost: evil.example/@demo.test", 400, ""},
		{"encoded CRLF in Host", "GET / HTTP/1.1\r\nHost: demo.test%0d%0aLocation:%20https://evil.example", 400, ""},
		{"CRLF splits Host", "GET / HTTP/1.1\r\nHost: demo.test\r\n evil.example", 400, ""},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: demo.test\r\nHost: evil.example", 400, ""},
		{"no Host", "GET / HTTP/1.0", 400, ""},
		{"unknown ACME token is 404, not redirected", "GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: demo.test", 404, ""},
		{"ACME path with an unknown host is not redirected", "GET /.well-known/acme-challenge/nope?x=1 HTTP/1.1\r\nHost: evil.example", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawRequest(t, e.httpAddr, tc.request)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Fatalf("Location %q, want %q", got, tc.location)
			}
			if resp.Header.Get("Strict-Transport-Security") != "" {
				t.Fatal("HSTS sent over plain HTTP (RFC 6797 forbids)")
			}
		})
	}
}

// rawRequest writes req (plus the final CRLF) on a fresh connection and
// reads one response.
func rawRequest(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !strings.Contains(req, "\r\n\r\n") {
		req += "\r\n\r\n"
	}
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestHSTS serves a route that opts in, one that says nothing and one that
// opts out, with the node-wide default off and on, over every protocol:
// the header appears only over TLS, on the silent route only when the
// default is on, and never on the route that opts out.
func TestHSTS(t *testing.T) {
	route := HSTSConfig{Enabled: true, MaxAge: units.Duration(time.Hour), IncludeSubdomains: true}
	mux := http.NewServeMux()
	mux.Handle("/opt-in", HSTS(hello, route))
	mux.Handle("/plain", hello)
	mux.Handle("/opt-out", HSTS(hello, HSTSConfig{Enabled: false}))
	const routeValue, defaultValue = "max-age=3600; includeSubDomains", "max-age=31536000"

	for _, def := range []bool{false, true} {
		e, roots := newInternalApp(t, func(c *Config) { c.HSTS = HSTSConfig{Enabled: def} }, mux)
		// The chain on a plain listener, as on edge.listen with
		// tls.http_listen off.
		plainURL := serveHTTP(t, e.m.Headers(mux))
		clients := map[string]*http.Client{
			"HTTP/1.1": clientFor(roots, e.tlsAddr, false),
			"HTTP/2.0": clientFor(roots, e.tlsAddr, true),
			"HTTP/3.0": h3ClientFor(t, roots, e.tlsAddr),
			"plain":    http.DefaultClient,
		}
		tests := []struct {
			path, proto, want string
		}{
			{"/opt-in", "HTTP/1.1", routeValue},
			{"/opt-in", "HTTP/2.0", routeValue},
			{"/opt-in", "HTTP/3.0", routeValue},
			{"/opt-in", "plain", ""},
			{"/plain", "HTTP/1.1", map[bool]string{true: defaultValue}[def]},
			{"/plain", "HTTP/2.0", map[bool]string{true: defaultValue}[def]},
			{"/plain", "plain", ""},
			{"/opt-out", "HTTP/1.1", ""},
			{"/opt-out", "HTTP/2.0", ""},
			{"/opt-out", "HTTP/3.0", ""},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("default %v %s %s", def, tc.path, tc.proto), func(t *testing.T) {
				url := "https://demo.test" + tc.path
				if tc.proto == "plain" {
					url = plainURL + tc.path
				}
				resp, body := fetch(t, clients[tc.proto], url)
				if resp.StatusCode != 200 || (tc.proto != "plain" && !strings.HasSuffix(body, tc.proto)) {
					t.Fatalf("got %d %q", resp.StatusCode, body)
				}
				if got := resp.Header.Get("Strict-Transport-Security"); got != tc.want {
					t.Fatalf("HSTS = %q, want %q", got, tc.want)
				}
			})
		}
	}
}

// TestAltSvcOnlyWithHTTP3: HTTP/3 is advertised on HTTPS responses when
// it is on, never when it is off, and never over plain HTTP.
func TestAltSvcOnlyWithHTTP3(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("http3=%v", on), func(t *testing.T) {
			e, roots := newInternal(t, func(c *Config) { c.HTTP3 = &on })
			if (e.h3 != nil) != on {
				t.Fatalf("HTTP/3 listener running = %v", e.h3 != nil)
			}
			_, port, _ := net.SplitHostPort(e.tlsAddr)
			want := map[bool]string{true: `h3=":` + port + `"; ma=86400`}[on]
			for _, h2 := range []bool{false, true} {
				resp, _ := fetch(t, clientFor(roots, e.tlsAddr, h2), "https://demo.test/")
				if got := resp.Header.Get("Alt-Svc"); got != want {
					t.Fatalf("%s: Alt-Svc = %q, want %q", resp.Proto, got, want)
				}
			}
			resp, _ := fetch(t, http.DefaultClient, serveHTTP(t, e.m.Headers(hello))+"/")
			if got := resp.Header.Get("Alt-Svc"); got != "" {
				t.Fatalf("plain HTTP: Alt-Svc = %q", got)
			}
		})
	}
}

// serveHTTP serves h over plain HTTP on 127.0.0.1 and returns its URL.
func serveHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestAdminCertificates(t *testing.T) {
	e, _ := newInternal(t, nil)
	h := e.m.AdminHandler()

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/certificates", nil))
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var got struct {
		Mode         string     `json:"mode"`
		Certificates []CertInfo `json:"certificates"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Mode != ModeInternal || len(got.Certificates) != 2 {
		t.Fatalf("got %+v", got)
	}
	for i, want := range []string{"*.demo.test", "demo.test"} {
		c := got.Certificates[i]
		if c.Name != want || c.Status != "valid" || !strings.Contains(c.Issuer, "Outpost Internal Root CA") || c.NotAfter.IsZero() || c.LastError != "" {
			t.Fatalf("certificates[%d] = %+v", i, c)
		}
	}

	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/v1/certificates", 405},
		{"GET", "/v1/other", 404},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.status {
			t.Fatalf("%s %s = %d, want %d", tc.method, tc.path, w.Code, tc.status)
		}
	}
}

// TestInternalCARootExport: the exported root is world-readable, holds
// exactly the root certificate (a CA, no key), and the CA's own directory
// and key stay private.
func TestInternalCARootExport(t *testing.T) {
	e, _ := newInternal(t, nil)
	dir := filepath.Join(filepath.Dir(filepath.Dir(e.m.RootPath())), "tls", "internal-ca")
	tests := []struct {
		path string
		mode os.FileMode
	}{
		{e.m.RootPath(), 0o644},
		{dir, 0o700 | os.ModeDir},
		{filepath.Join(dir, "root.key"), 0o600},
		{filepath.Join(dir, "root.pem"), 0o644},
	}
	for _, tc := range tests {
		st, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != tc.mode {
			t.Errorf("%s: mode %v, want %v", tc.path, st.Mode(), tc.mode)
		}
	}
	b, err := os.ReadFile(e.m.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, e.m.RootPEM()) {
		t.Fatal("exported root differs from the CA's root")
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("export holds more or other than one certificate: %q", b)
	}
	root, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		t.Fatalf("exported certificate is not a self-signed CA: %v", root.Subject)
	}
}
