package tlsedge

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
	list := func() CertInfo {
		t.Helper()
		w := httptest.NewRecorder()
		e.m.AdminHandler().ServeHTTP(w, httptest.NewRequest("GET", "/v1/certificates", nil))
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

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	before := time.Now()
	if err := e.m.ManageSync(ctx, []string{name}); err == nil {
		t.Fatal("ManageSync succeeded, want the HTTP-01 validation to fail")
	}
	c := list()
	if c.Status != "pending" || !strings.Contains(c.LastError, name) || c.LastErrorAt.Before(before) {
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
