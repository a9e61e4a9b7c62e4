package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/gateway"
	"github.com/outpost-edge/outpost/internal/cluster"
)

// TestReplicateKeys: a key created and then revoked through node A's admin
// API is known, with the same hash, and revoked on node B too.
func TestReplicateKeys(t *testing.T) {
	open := func(name string) *gateway.KeyStore {
		ks, err := gateway.OpenKeyStore(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ks.Close() })
		return ks
	}
	a, b := open("a.db"), open("b.db")
	peer := httptest.NewServer(gateway.AdminHandler(b, nil))
	defer peer.Close()
	fan, err := cluster.NewFanout("a", []cluster.Peer{{Name: "b", Admin: peer.URL}}, "", filepath.Join(t.TempDir(), "q.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fan.Close()
	node := httptest.NewServer(ReplicateKeys(gateway.AdminHandler(a, nil), fan, nil))
	defer node.Close()

	resp, err := http.Post(node.URL+"/v1/keys", "application/json", strings.NewReader(`{"id":"ci","owner":"build-bot","scopes":["deploy"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Key    string            `json:"key"`
		Record gateway.KeyRecord `json:"record"`
	}
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != 201 || created.Key == "" {
		t.Fatalf("create: %d %+v", resp.StatusCode, created)
	}
	got, ok := b.Get("ci")
	if !ok || got.Hash != created.Record.Hash || got.Hash != gateway.HashKey(created.Key) || got.RevokedAt != nil {
		t.Fatalf("peer after create: %+v %v", got, ok)
	}

	req, _ := http.NewRequest("DELETE", node.URL+"/v1/keys/ci", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, _ := b.Get("ci"); resp.StatusCode != 200 || got.RevokedAt == nil {
		t.Fatalf("peer after revoke: %d %+v", resp.StatusCode, got)
	}

	// A stale, unrevoked copy never un-revokes.
	if rec, err := b.Import(created.Record); err != nil || rec.RevokedAt == nil {
		t.Errorf("re-import: %+v %v", rec, err)
	}
	// The same id with another hash is refused.
	other := created.Record
	other.Hash = strings.Repeat("0", 64)
	if _, err := b.Import(other); err == nil {
		t.Error("import with a different hash accepted")
	}
}
