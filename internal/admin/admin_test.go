package admin

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/configerr"
)

func TestAuth(t *testing.T) {
	const token = "s3cret-token-0123456789"
	a := New(token, slog.New(slog.DiscardHandler))
	a.HandlePublic("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	a.Handle("GET /v1/status", JSONHandler(func() any { return map[string]string{"node": "x"} }))
	srv := httptest.NewServer(a)
	defer srv.Close()

	cases := []struct {
		name, method, path, auth string
		status                   int
		code                     string
	}{
		{"no token", "GET", "/v1/status", "", 401, "unauthorized"},
		{"wrong token", "GET", "/v1/status", "Bearer nope", 401, "unauthorized"},
		{"wrong scheme", "GET", "/v1/status", "Basic " + token, 401, "unauthorized"},
		{"right token", "GET", "/v1/status", "Bearer " + token, 200, ""},
		{"health is public", "GET", "/healthz", "", 200, ""},
		{"unknown path needs auth", "GET", "/v1/nope", "", 401, "unauthorized"},
		{"unknown path", "GET", "/v1/nope", "Bearer " + token, 404, "not_found"},
		{"wrong method", "DELETE", "/v1/status", "Bearer " + token, 405, "method_not_allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.code == "" {
				return
			}
			var body struct {
				Error struct {
					Status int    `json:"status"`
					Code   string `json:"code"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("error body is not our JSON shape: %v", err)
			}
			if body.Error.Code != c.code || body.Error.Status != c.status {
				t.Errorf("error %+v, want code %q", body.Error, c.code)
			}
			if c.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestReloadHandlerReportsErrors(t *testing.T) {
	var l configerr.List
	l.Addf("pools.api.policy", "unknown policy")
	h := ReloadHandler(func() (uint64, error) { return 3, l.Err() })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/reload", nil))
	if rec.Code != 422 {
		t.Fatalf("status %d", rec.Code)
	}
	var body struct {
		Error struct {
			Details []string `json:"details"`
		} `json:"error"`
	}
	json.Unmarshal(rec.Body.Bytes(), &body)
	if len(body.Error.Details) != 1 || body.Error.Details[0] != "pools.api.policy: unknown policy" {
		t.Errorf("details %q", body.Error.Details)
	}
	// Applied, but a step failed: the new generation runs, and the
	// answer must not claim the old config stayed.
	partial := ReloadHandler(func() (uint64, error) {
		return 5, &configerr.Partial{Generation: 5, Err: errors.New("dns: zones[0]: db.example:3: bad TTL")}
	})
	rec = httptest.NewRecorder()
	partial.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/reload", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "reload_incomplete") ||
		!strings.Contains(rec.Body.String(), "generation 5") || !strings.Contains(rec.Body.String(), "bad TTL") {
		t.Errorf("partial: %d %s", rec.Code, rec.Body.String())
	}
	ok := ReloadHandler(func() (uint64, error) { return 4, nil })
	rec = httptest.NewRecorder()
	ok.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/reload", nil))
	if rec.Code != 200 {
		t.Errorf("status %d", rec.Code)
	}
}

// TestCheckListener judges the address bound, not the name configured: a
// tokenless admin API on anything but loopback is refused.
func TestCheckListener(t *testing.T) {
	for _, c := range []struct {
		addr, token string
		err         bool
	}{
		{"127.0.0.1:9090", "", false},
		{"[::1]:9090", "", false},
		{"[::ffff:127.0.0.1]:9090", "", false},
		{"192.0.2.7:9090", "", true}, // what "localhost" resolved to, say
		{"[2001:db8::1]:9090", "", true},
		{"[::]:9090", "", true},
		{"192.0.2.7:9090", "tok-0123456789abcdef", false},
	} {
		err := CheckListener(fixedAddr{netip.MustParseAddrPort(c.addr)}, c.token)
		if (err != nil) != c.err || (err != nil && !errors.Is(err, ErrNoToken)) {
			t.Errorf("CheckListener(%s, %q) = %v", c.addr, c.token, err)
		}
	}
	// A real one: localhost binds loopback here.
	ln, err := net.Listen("tcp", "localhost:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := CheckListener(ln, ""); err != nil {
		t.Fatalf("localhost: %v", err)
	}
}

// fixedAddr is a listener that only reports an address.
type fixedAddr struct{ ap netip.AddrPort }

func (f fixedAddr) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (f fixedAddr) Close() error              { return nil }
func (f fixedAddr) Addr() net.Addr            { return net.TCPAddrFromAddrPort(f.ap) }

func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		addr, token string
		err         bool
	}{
		{"127.0.0.1:9090", "", false},
		{"[::1]:9090", "", false},
		{"localhost:9090", "", false},
		{"0.0.0.0:9090", "", true},
		{":9090", "", true},
		{"0.0.0.0:9090", "tok-0123456789abcdef", false},
	} {
		err := CheckListen(c.addr, c.token)
		if (err != nil) != c.err || (err != nil && !errors.Is(err, ErrNoToken)) {
			t.Errorf("CheckListen(%q, %q) = %v", c.addr, c.token, err)
		}
	}
}
