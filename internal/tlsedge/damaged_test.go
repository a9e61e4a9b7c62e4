package tlsedge

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A stored certificate that cannot be used no longer stops the start with
// "caching certificate: unusable certificate" and no file named: it is
// moved aside, logged, and a new one is obtained.
func TestDamagedStoredCertificateReplaced(t *testing.T) {
	site := filepath.Join("tls", "certificates", internalIssuerKey, "demo.test", "demo.test")
	for _, tc := range []struct {
		name   string
		damage func(base string)
	}{
		{"certificate truncated", func(b string) { os.Truncate(b+".crt", 20) }},
		{"certificate empty", func(b string) { os.Truncate(b+".crt", 0) }},
		{"key truncated", func(b string) { os.Truncate(b+".key", 40) }},
		{"key of another certificate", func(b string) {
			other, _ := os.ReadFile(filepath.Join(filepath.Dir(b), "..", "www.demo.test", "www.demo.test.key"))
			os.WriteFile(b+".key", other, 0o600)
		}},
		{"metadata not JSON", func(b string) { os.WriteFile(b+".json", []byte("{"), 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			start := func() *Manager {
				t.Helper()
				cfg := Config{Enabled: true, Mode: ModeInternal, Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
					Names: []string{"demo.test", "www.demo.test"}}
				cfg.SetDefaults()
				m, err := New(cfg, Options{Logger: testLogger(t), DataDir: dir})
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if err := m.Start(t.Context()); err != nil {
					t.Fatalf("Start: %v", err)
				}
				return m
			}
			start().Stop()
			base := filepath.Join(dir, site)
			tc.damage(base)
			m := start()
			defer m.Stop()
			c, err := m.TLSConfig().GetCertificate(&tls.ClientHelloInfo{ServerName: "demo.test"})
			if err != nil || c == nil {
				t.Fatalf("no certificate after restart: %v", err)
			}
			if _, err := os.Stat(base + ".crt.damaged"); err != nil {
				t.Errorf("damaged certificate not kept: %v", err)
			}
		})
	}
}

// The internal CA's files are checked at start: each problem is an error
// naming the file, never a new root minted over the old one.
func TestInternalCAFilesChecked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"key readable by others", func(t *testing.T, d string) { os.Chmod(filepath.Join(d, "root.key"), 0o644) }, "chmod 600"},
		{"key readable by the group", func(t *testing.T, d string) { os.Chmod(filepath.Join(d, "root.key"), 0o640) }, "chmod 600"},
		{"key of another root", func(t *testing.T, d string) {
			other := t.TempDir()
			if _, err := loadOrCreateCA(other, 24*time.Hour, time.Hour, time.Now, randReader()); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(other, "root.key"))
			os.WriteFile(filepath.Join(d, "root.key"), b, 0o600)
		}, "root.key does not match root.pem"},
		{"root truncated", func(t *testing.T, d string) { os.Truncate(filepath.Join(d, "root.pem"), 30) }, "root.pem"},
		{"key truncated", func(t *testing.T, d string) { os.Truncate(filepath.Join(d, "root.key"), 30) }, "root.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := loadOrCreateCA(dir, 24*time.Hour, time.Hour, time.Now, randReader()); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir)
			before, _ := os.ReadFile(filepath.Join(dir, "root.pem"))
			_, err := loadOrCreateCA(dir, 24*time.Hour, time.Hour, time.Now, randReader())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("err = %v, want one naming %s and %q", err, dir, tc.want)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, "root.pem")); !bytes.Equal(before, after) {
				t.Error("root.pem changed")
			}
		})
	}
}
