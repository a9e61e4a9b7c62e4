package tlsedge

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/units"

	mdns "github.com/miekg/dns"
)

// TestAdminLastError: a failed order shows in GET /v1/certificates as
// last_error/last_error_at, and the next success clears it.
func TestAdminLastError(t *testing.T) {
	srv, dnsAddr := startOutpostDNS(t)
	const name = "late.example.test"
	// Not started: the test orders with ManageSync.
	e, _ := newACMENode(t, acmeSetup{challenges: []string{ChallengeHTTP01}, names: []string{name}, dnsAddr: dnsAddr})
	// The name points where nothing listens, so HTTP-01 fails.
	elsewhere, err := mdns.NewRR(name + ". 60 IN A 127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddRecord(elsewhere); err != nil {
		t.Fatal(err)
	}
	list := func() CertInfo { return listed(t, e.m, name) }

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	before := time.Now()
	if err := e.m.ManageSync(ctx, []string{name}); err == nil {
		t.Fatal("ManageSync succeeded, want the HTTP-01 validation to fail")
	}
	c := list()
	if c.Status != "pending" || !strings.Contains(c.LastError, name) || c.LastErrorAt.Before(before) || c.LastErrorRenewal {
		t.Fatalf("after the failed order: %+v, want pending with last_error and last_error_at set", c)
	}

	t.Logf("last_error: %s", c.LastError)

	// Pointed back at this node (the zone's wildcard), the next order
	// succeeds and the error is gone.
	if err := srv.RemoveRecord(elsewhere); err != nil {
		t.Fatal(err)
	}
	obtain(t, e, name)
	c = list()
	if c.Status != "valid" || c.LastError != "" || !c.LastErrorAt.IsZero() || c.LastObtained.IsZero() {
		t.Fatalf("after the successful order: %+v, want valid with no last_error", c)
	}
}

// listed returns name's entry in GET /v1/certificates.
func listed(t *testing.T, m *Manager, name string) CertInfo {
	t.Helper()
	w := httptest.NewRecorder()
	m.AdminHandler().ServeHTTP(w, httptest.NewRequest("GET", "/v1/certificates", nil))
	var got struct {
		Certificates []CertInfo `json:"certificates"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, w.Body)
	}
	for _, c := range got.Certificates {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("%s not listed: %s", name, w.Body)
	return CertInfo{}
}

// TestAdminAfterFailedRenewal: when a renewal fails, the listing still
// shows the certificate in service (names, issuer, expiry) together with
// the renewal's error, and the old certificate keeps being served.
func TestAdminAfterFailedRenewal(t *testing.T) {
	srv, dnsAddr := startOutpostDNS(t)
	const name = "fading.example.test"
	e, p := newACMENode(t, acmeSetup{
		challenges: []string{ChallengeHTTP01},
		names:      []string{name},
		dnsAddr:    dnsAddr,
		// Seconds; in the renewal window (90%) after 12s: the A record
		// that breaks validation must be in place before the first
		// renewal, also on a loaded machine (6s was once not enough).
		validity: 120,
		mutate: func(c *Config) {
			c.RenewalWindowRatio = 0.9
			c.RenewCheckInterval = units.Duration(time.Second)
		},
	})
	obtain(t, e, name)
	served := serialOf(t, e.tlsAddr, name, p)
	// From now on the CA's HTTP-01 validation reaches nobody.
	elsewhere, err := mdns.NewRR(name + ". 60 IN A 127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddRecord(elsewhere); err != nil {
		t.Fatal(err)
	}
	obtained := listed(t, e.m, name)

	var c CertInfo
	waitFor(t, 60*time.Second, "a failed renewal in the listing", func() bool {
		c = listed(t, e.m, name)
		return c.LastError != ""
	})
	if !strings.Contains(c.LastError, name) || c.LastErrorAt.Before(c.LastObtained) || !c.LastErrorRenewal {
		t.Fatalf("last_error %q at %v (renewal %v), want the renewal's error after %v", c.LastError, c.LastErrorAt, c.LastErrorRenewal, c.LastObtained)
	}
	if c.Serial != obtained.Serial || len(c.Names) != 1 || c.Names[0] != name || !strings.Contains(c.Issuer, "Pebble") ||
		!c.NotAfter.Equal(obtained.NotAfter) || c.Renewals != 0 || c.LastObtained != obtained.LastObtained {
		t.Fatalf("after the failed renewal: %+v, want the certificate obtained first: %+v", c, obtained)
	}
	if got := serialOf(t, e.tlsAddr, name, p); got != served {
		t.Fatalf("serving serial %s, want the original %s", got, served)
	}
}
