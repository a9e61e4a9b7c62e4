package tlsedge

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

// pebbleCA is an in-process Pebble ACME server on 127.0.0.1.
type pebbleCA struct {
	directory string         // ACME directory URL
	serverPEM string         // file with the WFE's HTTPS certificate (acme.ca_root)
	roots     *x509.CertPool // Pebble's issuing root: what clients trust
	orders    atomic.Int64   // new-order requests seen
}

type pebbleOptions struct {
	httpPort, tlsPort int               // where the VA validates HTTP-01 / TLS-ALPN-01
	resolver          string            // DNS server the VA asks (host:port, TCP)
	validity          uint64            // certificate lifetime in seconds; 0: Pebble's default
	eab               map[string]string // when set, accounts need one of these EAB keys (id → base64url MAC key)
}

// startPebble runs Pebble's CA, VA and WFE in this process. Its VA resolves
// every name through opts.resolver, i.e. Outpost's own DNS in these tests.
func startPebble(t *testing.T, opts pebbleOptions) *pebbleCA {
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
	profiles := map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: opts.validity}}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, opts.httpPort, opts.tlsPort, false, opts.resolver, store)
	for id, key := range opts.eab {
		if err := store.AddExternalAccountKeyByID(id, key); err != nil {
			t.Fatal(err)
		}
	}
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, opts.eab != nil, 1, 1)

	p := &pebbleCA{}
	handler := front.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/order-plz") {
			p.orders.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)

	p.directory = srv.URL + wfe.DirectoryPath
	p.serverPEM = filepath.Join(t.TempDir(), "pebble-wfe.pem")
	if err := os.WriteFile(p.serverPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	p.roots = x509.NewCertPool()
	p.roots.AddCert(authority.GetRootCert(0).Cert)
	return p
}
