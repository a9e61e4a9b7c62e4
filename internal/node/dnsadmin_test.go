package node

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/internal/admin"
)

// TestDNSRecordsThroughAdminAPI: the node mounts /v1/dns/records on the
// admin API behind its token. With the token, POST adds a record (201) that
// is served over UDP at once, GET lists it (200) and DELETE removes it
// (200); without the token every method is 401 and changes nothing.
func TestDNSRecordsThroughAdminAPI(t *testing.T) {
	dnsAddr := freeDNSAddr(t)
	n, _ := startNode(t, dnsNodeConfig(t, dnsAddr))
	const token = "test-token-0123456789"
	adm := admin.New(token, slog.New(slog.DiscardHandler))
	n.MountAdmin(adm, nil)
	srv := httptest.NewServer(adm)
	defer srv.Close()

	do := func(method, path, body string, auth bool) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const name = "_acme-challenge.example.com."
	txt := func() (int, []string) {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeTXT)
		c := &mdns.Client{Net: "udp", Timeout: 3 * time.Second}
		r, _, err := c.Exchange(m, dnsAddr)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, rr := range r.Answer {
			out = append(out, rr.String())
		}
		return r.Rcode, out
	}
	const served = name + "\t60\tIN\tTXT\t\"token-1\""
	body := `{"name": "` + name + `", "type": "TXT", "data": "\"token-1\""}`
	del := "/v1/dns/records?" + url.Values{"name": {name}, "type": {"TXT"}, "data": {`"token-1"`}}.Encode()

	if code, b := do("POST", "/v1/dns/records", body, false); code != http.StatusUnauthorized {
		t.Fatalf("POST without token: %d %s", code, b)
	}
	if rcode, _ := txt(); rcode != mdns.RcodeNameError {
		t.Fatalf("after an unauthorized POST: rcode %s, want NXDOMAIN", mdns.RcodeToString[rcode])
	}
	if code, b := do("GET", "/v1/dns/records", "", false); code != http.StatusUnauthorized {
		t.Fatalf("GET without token: %d %s", code, b)
	}

	code, b := do("POST", "/v1/dns/records", body, true)
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %s", code, b)
	}
	var added struct {
		Zone   string `json:"zone"`
		Serial uint32 `json:"serial"`
	}
	if err := json.Unmarshal([]byte(b), &added); err != nil || added.Zone != "example.com." {
		t.Fatalf("POST answer %s (%v)", b, err)
	}
	if rcode, got := txt(); rcode != mdns.RcodeSuccess || len(got) != 1 || got[0] != served {
		t.Fatalf("after POST: rcode %s answer %q, want %q", mdns.RcodeToString[rcode], got, served)
	}

	code, b = do("GET", "/v1/dns/records?zone=example.com", "", true)
	if code != http.StatusOK {
		t.Fatalf("GET: %d %s", code, b)
	}
	var list struct {
		Zones []struct {
			Zone    string `json:"zone"`
			Serial  uint32 `json:"serial"`
			Records []struct {
				RR string `json:"rr"`
			} `json:"records"`
		} `json:"zones"`
	}
	if err := json.Unmarshal([]byte(b), &list); err != nil || len(list.Zones) != 1 {
		t.Fatalf("GET answer %s (%v)", b, err)
	}
	found := false
	for _, r := range list.Zones[0].Records {
		found = found || r.RR == served
	}
	if !found || list.Zones[0].Serial != added.Serial {
		t.Fatalf("GET lists serial %d (POST said %d), record listed: %v\n%s", list.Zones[0].Serial, added.Serial, found, b)
	}

	if code, b := do("DELETE", del, "", false); code != http.StatusUnauthorized {
		t.Fatalf("DELETE without token: %d %s", code, b)
	}
	if rcode, got := txt(); rcode != mdns.RcodeSuccess || len(got) != 1 {
		t.Fatalf("after an unauthorized DELETE: rcode %s answer %q", mdns.RcodeToString[rcode], got)
	}
	if code, b := do("DELETE", del, "", true); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	if rcode, got := txt(); rcode != mdns.RcodeNameError || len(got) != 0 {
		t.Fatalf("after DELETE: rcode %s answer %q, want NXDOMAIN", mdns.RcodeToString[rcode], got)
	}
	if code, b := do("DELETE", del, "", true); code != http.StatusNotFound {
		t.Fatalf("second DELETE: %d %s, want 404", code, b)
	}
}

// TestAdminBodyTooLarge: a body over an admin endpoint's limit is a 413
// body_too_large, not a 400 about JSON cut short.
func TestAdminBodyTooLarge(t *testing.T) {
	n, _ := startNode(t, dnsNodeConfig(t, freeDNSAddr(t)))
	const token = "test-token-0123456789"
	adm := admin.New(token, slog.New(slog.DiscardHandler))
	n.MountAdmin(adm, nil)
	adm.Handle("POST /v1/purge", admin.PurgeHandler(nil, nil)) // as serve mounts it
	srv := httptest.NewServer(adm)
	defer srv.Close()
	for _, tc := range []struct{ path, body string }{
		{"/v1/purge", `{"urls": ["http://www.example.com/` + strings.Repeat("a", 2<<20) + `"]}`},
		{"/v1/dns/records", `{"name": "x.example.com.", "type": "TXT", "data": "` + strings.Repeat("a", 128<<10) + `"}`},
	} {
		req, _ := http.NewRequest("POST", srv.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || out.Error.Code != "body_too_large" {
			t.Errorf("POST %s with %d bytes: %d %q, want 413 body_too_large", tc.path, len(tc.body), resp.StatusCode, out.Error.Code)
		}
	}
}

// dnsNodeConfig is a node serving example.com on dnsAddr, health checks
// and RRL off.
func dnsNodeConfig(t *testing.T, dnsAddr string) string {
	return fmt.Sprintf(`node: test
data_dir: %s
edge:
  listen: 127.0.0.1:0
dns:
  listen: [%q]
  zones:
    - origin: example.com
      records: ["www 300 IN A 192.0.2.1"]
  health: {disabled: true}
  rrl: {disabled: true}
`, t.TempDir(), dnsAddr)
}
