package tlsedge

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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
	e := startEdge(t, m, tlsLn, httpLn, hello)
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

func TestRedirectAndHSTS(t *testing.T) {
	e, roots := newInternal(t, func(c *Config) {
		c.HSTS = HSTSConfig{Enabled: true, MaxAge: units.Duration(time.Hour), IncludeSubdomains: true}
	})
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	_, tlsPort, _ := strings.Cut(e.tlsAddr, ":")

	tests := []struct {
		name     string
		method   string
		host     string
		path     string
		status   int
		location string
	}{
		{"GET redirects with path and query", "GET", "www.demo.test", "/a/b?c=d", 308, "https://www.demo.test:" + tlsPort + "/a/b?c=d"},
		{"POST keeps method via 308", "POST", "demo.test", "/form", 308, "https://demo.test:" + tlsPort + "/form"},
		{"port in Host is replaced", "GET", "demo.test:8080", "/", 308, "https://demo.test:" + tlsPort + "/"},
		{"hostile Host refused", "GET", "evil.example/@x", "/", 400, ""},
		{"unknown ACME token is 404, not redirected", "GET", "demo.test", "/.well-known/acme-challenge/nope", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://"+e.httpAddr+tc.path, strings.NewReader("body"))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			resp, err := plain.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
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

	resp, _ := fetch(t, clientFor(roots, e.tlsAddr, true), "https://demo.test/")
	if got, want := resp.Header.Get("Strict-Transport-Security"), "max-age=3600; includeSubDomains"; got != want {
		t.Fatalf("HSTS = %q, want %q", got, want)
	}
}

func TestHSTSPerRoute(t *testing.T) {
	tests := []struct {
		name   string
		policy HSTSConfig
		tls    bool
		want   string
	}{
		{"off by default", HSTSConfig{}, true, ""},
		{"on with defaults", HSTSConfig{Enabled: true}, true, "max-age=31536000"},
		{"preload", HSTSConfig{Enabled: true, IncludeSubdomains: true, Preload: true}, true, "max-age=31536000; includeSubDomains; preload"},
		{"never over plain HTTP", HSTSConfig{Enabled: true}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := HSTS(hello, tc.policy)
			r := httptest.NewRequest("GET", "https://demo.test/", nil)
			if !tc.tls {
				r.TLS = nil
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if got := w.Header().Get("Strict-Transport-Security"); got != tc.want {
				t.Fatalf("HSTS = %q, want %q", got, tc.want)
			}
		})
	}
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
