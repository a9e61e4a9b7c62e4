package node

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/gateway"
	"github.com/outpost-edge/outpost/internal/admin"
)

// TestKeyIDOfConfigKeyRefused: POST /v1/keys refuses an id a config key
// already has (409), so a stored key never shares a config key's
// rate-limit bucket and X-Outpost-Key-Id; other ids are created.
func TestKeyIDOfConfigKeyRefused(t *testing.T) {
	n, _ := startNode(t, fmt.Sprintf(`node: test
data_dir: %s
edge: {listen: 127.0.0.1:0}
gateway:
  api_keys:
    - {id: reporting, hash: %s, owner: svc}
routes:
  - name: api
    upstream: http://127.0.0.1:9
    gateway: {auth: {mode: required}}
`, t.TempDir(), gateway.HashKey("opk_config-key-0123456789")))
	const token = "test-token-0123456789"
	adm := admin.New(token, slog.New(slog.DiscardHandler))
	n.MountAdmin(adm, nil)
	srv := httptest.NewServer(adm)
	defer srv.Close()
	for _, tc := range []struct {
		id     string
		status int
	}{{"reporting", http.StatusConflict}, {"reporting-2", http.StatusCreated}} {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/keys", strings.NewReader(`{"id": "`+tc.id+`", "owner": "alice"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("create id %q: %d, want %d", tc.id, resp.StatusCode, tc.status)
		}
	}
}
