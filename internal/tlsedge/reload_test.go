package tlsedge

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSetNamesAndMetrics(t *testing.T) {
	dir := t.TempDir()
	tlsLn, httpLn := reserveListeners(t)
	cfg := Config{Enabled: true, Mode: ModeInternal, Listen: tlsLn.Addr().String(), HTTPListen: httpLn.Addr().String(),
		Names: []string{"demo.test"}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := New(cfg, Options{Logger: testLogger(t), DataDir: dir, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := startEdge(t, m, tlsLn, httpLn, hello)
	roots := x509.NewCertPool()
	pemBytes, err := os.ReadFile(filepath.Join(dir, "tls", "internal-ca", "root.pem"))
	if err != nil || m.RootPath() != filepath.Join(dir, "tls", "internal-ca", "root.pem") {
		t.Fatalf("default root path %q: %v", m.RootPath(), err)
	}
	roots.AppendCertsFromPEM(pemBytes)

	handshake := func(name string) error {
		c, err := tls.Dial("tcp", e.tlsAddr, &tls.Config{RootCAs: roots, ServerName: name})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := handshake("other.test"); err == nil {
		t.Fatal("other.test served before it was configured")
	}
	if err := m.SetNames(t.Context(), []string{"demo.test", "other.test"}); err != nil {
		t.Fatal(err)
	}
	if err := handshake("other.test"); err != nil {
		t.Fatalf("other.test after SetNames: %v", err)
	}
	if got := testutil.ToFloat64(m.metrics.obtained.WithLabelValues("false")); got != 2 {
		t.Fatalf("obtained_total = %v, want 2", got)
	}
	if n := testutil.CollectAndCount(m.metrics.expiry); n != 2 {
		t.Fatalf("expiry gauges: %d, want one per name", n)
	}

	if err := m.SetNames(t.Context(), []string{"other.test"}); err != nil {
		t.Fatal(err)
	}
	if err := handshake("demo.test"); err == nil {
		t.Fatal("demo.test still served after it was removed")
	}
	cs := m.Certificates()
	if len(cs) != 1 || cs[0].Name != "other.test" || cs[0].Status != "valid" {
		t.Fatalf("Certificates after removal: %+v", cs)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Fatalf("registry: %d metrics, %v", n, err)
	}
}
