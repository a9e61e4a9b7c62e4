package tlsedge

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRedirect feeds hostile Host headers and targets to the port-80
// handler: it must never panic, and a redirect must stay on https and on
// the requested host (no open redirect).
func FuzzRedirect(f *testing.F) {
	for _, seed := range [][2]string{
		{"example.com", "/a?b=c"},
		{"example.com:80", "//evil.com/x"},
		{"evil.com/@x", "/"},
		{"[::1]:80", "/p"},
		{"a.example.com", "/%2F%2Fevil.com"},
		{"", "/"},
	} {
		f.Add(seed[0], seed[1])
	}
	m := &Manager{src: noCerts{}, https: ":8443", names: []string{"example.com", "*.example.com"}}
	h := m.HTTPHandler()
	f.Fuzz(func(t *testing.T, host, target string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t") {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		r := httptest.NewRequest("GET", "http://x/", nil)
		r.URL = u
		r.RequestURI = target
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusPermanentRedirect {
			return
		}
		loc, err := url.Parse(w.Header().Get("Location"))
		if err != nil {
			t.Fatalf("unparsable Location %q: %v", w.Header().Get("Location"), err)
		}
		wantHost := host
		if h, _, err := net.SplitHostPort(host); err == nil {
			wantHost = h
		}
		wantHost = strings.TrimSuffix(strings.Trim(wantHost, "[]"), ".")
		if loc.Scheme != "https" || !strings.EqualFold(loc.Hostname(), wantHost) || loc.User != nil {
			t.Fatalf("Host %q target %q redirected to %q", host, target, loc)
		}
	})
}

// noCerts is a certSource holding no certificates; the redirect only
// calls Lookup.
type noCerts struct{ certSource }

func (noCerts) Lookup(string) []certView { return nil }
