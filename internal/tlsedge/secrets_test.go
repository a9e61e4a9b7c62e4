package tlsedge

import (
	"context"
	"encoding/pem"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/logtest"
)

// TestNoSecretsInLogs runs the paths that handle secrets with every log
// line kept (debug, certmagic's included) and greps the output for them:
// the EAB MAC key, the peers' bearer token, and every private key in
// storage (PEM or its base64 body).
func TestNoSecretsInLogs(t *testing.T) {
	const mac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	const token = "peer-token-never-logged"
	tests := []struct {
		name     string
		wantKeys bool // the run stores private keys under dir
		run      func(t *testing.T, log *slog.Logger, dir string)
	}{
		{"ACME order with EAB", true, func(t *testing.T, log *slog.Logger, dir string) {
			_, dnsAddr := startOutpostDNS(t)
			e, _ := newACMENode(t, acmeSetup{
				challenges: []string{ChallengeHTTP01},
				names:      []string{"eab.example.test"},
				dnsAddr:    dnsAddr,
				eab:        map[string]string{"kid-1": mac},
				mutate:     func(c *Config) { c.ACME.EAB = &EABConfig{KeyID: "kid-1", MACKey: mac} },
				logger:     log,
				dataDir:    dir,
			})
			obtain(t, e, "eab.example.test")
		}},
		{"internal CA", true, func(t *testing.T, log *slog.Logger, dir string) {
			cfg := Config{Enabled: true, Mode: ModeInternal, Listen: "127.0.0.1:0", Names: []string{"demo.test"}}
			cfg.SetDefaults()
			m, err := New(cfg, Options{Logger: log, DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Stop()
			if err := m.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
		}},
		{"refused peer push", false, func(t *testing.T, log *slog.Logger, _ string) {
			local, _ := startOutpostDNS(t)
			peer, _ := startOutpostDNS(t)
			push := &PeerPush{Local: RecordServerTXT(local), Peers: []Peer{{Name: "p", Admin: peerAdmin(t, peer, "other")}},
				Token: token, Client: &http.Client{Timeout: 5 * time.Second}, Logger: log}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := push.AddTXT(ctx, TXTRecord{Name: "_acme-challenge.example.test.", Text: "x", TTL: time.Minute}); err == nil {
				t.Fatal("AddTXT succeeded with a refused token")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out logtest.Buffer
			log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
			dir := t.TempDir()
			tc.run(t, log, dir)
			logs := out.String()
			if logs == "" {
				t.Fatal("nothing logged: the capture is not wired")
			}
			secrets := map[string]string{"EAB MAC key": mac, "peer token": token, "PEM key marker": "PRIVATE KEY"}
			keys := storedKeys(t, dir)
			if tc.wantKeys && len(keys) == 0 {
				t.Fatal("no private key in storage to look for")
			}
			for i, k := range keys {
				for j, line := range strings.Split(k, "\n") {
					if len(line) >= 32 { // base64 body lines; headers are covered by the marker
						secrets[fmt.Sprintf("stored key %d line %d", i, j)] = line
					}
				}
			}
			for what, secret := range secrets {
				if strings.Contains(logs, secret) {
					t.Errorf("log output contains the %s", what)
				}
			}
		})
	}
}

// storedKeys returns every PEM private key under dir.
func storedKeys(t *testing.T, dir string) []string {
	t.Helper()
	var keys []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			if strings.Contains(blk.Type, "PRIVATE KEY") {
				keys = append(keys, string(pem.EncodeToMemory(blk)))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
