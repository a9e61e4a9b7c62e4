// Package acmetest runs a real ACME server, Pebble, in the test process,
// for the end-to-end certificate tests of tlsedge and node. Only tests
// import it, so Pebble never reaches the outpost binary.
package acmetest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// CA is an in-process Pebble (CA, VA and WFE) on 127.0.0.1.
type CA struct {
	Directory string         // ACME directory URL
	ServerPEM string         // file with the WFE's HTTPS certificate (tls.acme.ca_root)
	Roots     *x509.CertPool // Pebble's issuing root: what clients trust
	orders    atomic.Int64
}

// Orders is the number of new-order requests Pebble has seen.
func (c *CA) Orders() int64 { return c.orders.Load() }

// Options are where Pebble's VA validates and what it issues.
type Options struct {
	HTTPPort, TLSPort int               // where the VA validates HTTP-01 / TLS-ALPN-01 (0: unused)
	Resolver          string            // DNS server the VA asks (host:port): Outpost's own DNS in these tests
	Validity          uint64            // certificate lifetime in seconds; 0: Pebble's default
	EAB               map[string]string // when set, accounts need one of these EAB keys (id → base64url MAC key)
}

// Start runs Pebble until the test ends.
func Start(t testing.TB, o Options) *CA {
	t.Helper()
	// Pebble reads its knobs from the environment: no random validation
	// sleeps, no injected bad nonces, no authorization reuse (every order
	// really validates).
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")

	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: o.Validity}}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, o.HTTPPort, o.TLSPort, false, o.Resolver, store)
	for id, key := range o.EAB {
		if err := store.AddExternalAccountKeyByID(id, key); err != nil {
			t.Fatal(err)
		}
	}
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, o.EAB != nil, 1, 1)

	c := &CA{}
	handler := front.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/order-plz") {
			c.orders.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)

	c.Directory = srv.URL + wfe.DirectoryPath
	c.ServerPEM = filepath.Join(t.TempDir(), "pebble-wfe.pem")
	if err := os.WriteFile(c.ServerPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Roots = x509.NewCertPool()
	c.Roots.AddCert(authority.GetRootCert(0).Cert)
	return c
}
