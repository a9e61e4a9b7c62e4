package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/internal/telemetry"
)

// TestDemoWalksTheSeedFlow runs the demo on its contract addresses and
// walks the whole flow: DNS → edge cache → gateway → load balancer →
// origins, purge, and failure of one and then both origins.
func TestDemoWalksTheSeedFlow(t *testing.T) {
	skipFixedPorts(t)
	const token = "e2e-admin-token-0123456789"
	start := time.Now()
	d, err := Start(Options{DataDir: t.TempDir(), Token: token, Log: telemetry.NewLogger(os.Stderr, "warn", "text")})
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	t.Logf("demo up in %v", time.Since(start))
	client := &http.Client{Timeout: 15 * time.Second}

	// 1. DNS steering by ECS, with the scope the answer depends on.
	regions := []struct{ subnet, want string }{
		{"193.0.0.0/24", "127.0.0.11"}, // NL → eu
		{"8.8.8.0/24", "127.0.0.12"},   // US → us
		{"133.1.0.0/16", "127.0.0.13"}, // JP → ap
	}
	for _, r := range regions {
		for _, proto := range []string{"udp", "tcp"} {
			got, scope := queryECS(t, proto, DNSAddr, "www.demo.test.", r.subnet)
			if got != r.want {
				t.Errorf("%s ECS %s: www.demo.test → %s, want %s", proto, r.subnet, got, r.want)
			}
			if scope == 0 {
				t.Errorf("%s ECS %s: scope prefix 0, want the prefix the answer depends on", proto, r.subnet)
			}
		}
	}
	// Each edge answers DNS on its own address too.
	if got, _ := queryECS(t, "udp", "127.0.0.13:8053", "www.demo.test.", "193.0.0.0/24"); got != "127.0.0.11" {
		t.Errorf("ap's DNS steered NL to %s", got)
	}

	// 2. Static asset through each region's edge: MISS then HIT.
	for _, e := range Edges {
		url := "http://" + e.EdgeAddr() + "/static/app.css"
		first := get(t, client, url, nil)
		second := get(t, client, url, nil)
		if first.status != 200 || first.header.Get("X-Cache") != "MISS" || second.header.Get("X-Cache") != "HIT" {
			t.Errorf("%s static: %d %s then %s", e.Name, first.status, first.header.Get("X-Cache"), second.header.Get("X-Cache"))
		}
	}
	eu := "http://" + Edges[0].EdgeAddr()

	// 2b. The same asset over HTTPS (HTTP/2) from the internal CA.
	pem, err := os.ReadFile(filepath.Join(d.DataDir, "demo-root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.11:8443")
		},
	}}
	resp, err := tc.Get("https://www.demo.test:8443/static/app.css")
	if err != nil {
		t.Fatalf("https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.Header.Get("X-Cache") == "" || resp.Header.Get("Alt-Svc") == "" {
		t.Errorf("https: %d %s X-Cache=%q Alt-Svc=%q", resp.StatusCode, resp.Proto, resp.Header.Get("X-Cache"), resp.Header.Get("Alt-Svc"))
	}

	// 3. Sign up and log in → JWT from the user service, accepted by the gateway.
	r := post(t, client, eu+"/api/users/signup", "", `{"username":"dave","password":"dave-password-1"}`)
	if r.status != 201 {
		t.Fatalf("signup: %d %s", r.status, r.body)
	}
	tok, refresh := login(t, client, eu, "dave", "dave-password-1")

	// 3b. Refresh tokens are sessions in the origins' shared bbolt bucket:
	// refresh works through the edge on either instance, logout revokes.
	for _, step := range []struct {
		path   string
		status int
	}{
		{"/api/users/refresh", 200},
		{"/api/users/refresh", 200},
		{"/api/users/logout", 204},
		{"/api/users/refresh", 401},
	} {
		if r := post(t, client, eu+step.path, "", fmt.Sprintf(`{"refresh_token":%q}`, refresh)); r.status != step.status {
			t.Errorf("%s with the login's refresh token: %d, want %d: %s", step.path, r.status, step.status, r.body)
		}
	}

	// 4. Post a tweet through gateway and load balancer; 5. read the timeline.
	r = post(t, client, eu+"/api/tweets", tok, `{"text":"hello from the e2e test"}`)
	if r.status != 201 && r.status != 200 {
		t.Fatalf("tweet: %d %s", r.status, r.body)
	}
	r = get(t, client, eu+"/api/timeline", map[string]string{"Authorization": "Bearer " + tok})
	if r.status != 200 || !strings.Contains(r.body, "hello from the e2e test") {
		t.Errorf("timeline: %d %s", r.status, r.body)
	}
	if r = get(t, client, eu+"/api/timeline", nil); r.status != 401 {
		t.Errorf("timeline without a token: %d", r.status)
	}
	// Identity headers a client sends are stripped by the gateway, so they
	// never reach the origin as someone's identity, on any kind of route.
	forged := map[string]string{"X-Outpost-User": "u1", "X-Outpost-Roles": "admin",
		"X-Outpost-Timestamp": "1", "X-Outpost-Signature": "v1=forged"}
	for _, path := range []string{"/api/users/me", "/api/timeline"} {
		if r = get(t, client, eu+path, forged); r.status != 401 {
			t.Errorf("%s with forged identity headers: %d %s", path, r.status, r.body)
		}
	}

	// 6. Deleting someone else's tweet is refused by the origin (403).
	r = get(t, client, eu+"/api/users/alice/tweets", nil)
	var list struct {
		Tweets []struct{ ID string } `json:"tweets"`
	}
	json.Unmarshal([]byte(r.body), &list)
	if len(list.Tweets) == 0 {
		t.Fatalf("alice has no tweets: %d %s", r.status, r.body)
	}
	r = do(t, client, "DELETE", eu+"/api/tweets/"+list.Tweets[0].ID, map[string]string{"Authorization": "Bearer " + tok}, "")
	if r.status != 403 {
		t.Errorf("deleting alice's tweet as dave: %d %s", r.status, r.body)
	}

	// 7. Purge the asset through the admin API: the next GET is a MISS on every edge.
	r = do(t, client, "POST", "http://"+AdminAddr+"/v1/purge", map[string]string{"Authorization": "Bearer " + token},
		`{"urls":["http://www.demo.test/static/app.css"]}`)
	if r.status != 200 || !strings.Contains(r.body, `"purged": 3`) {
		t.Errorf("purge: %d %s", r.status, r.body)
	}
	for _, e := range Edges {
		if r := get(t, client, "http://"+e.EdgeAddr()+"/static/app.css", nil); r.header.Get("X-Cache") != "MISS" {
			t.Errorf("%s after purge: X-Cache %s", e.Name, r.header.Get("X-Cache"))
		}
	}

	// 7b. Edit demo.yaml and reload twice at once: every edge serves the
	// new route (both reloads read the same file, one at a time).
	path := filepath.Join(d.DataDir, "demo.yaml")
	yaml, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(yaml), "\nroutes:\n", `
routes:
  - name: reloaded
    path_prefix: /reloaded/
    pool: origin
    gateway: {auth: {mode: none}, response: {set: {X-Reloaded: "yes"}}}
`, 1)
	if edited == string(yaml) {
		t.Fatal("no routes: line in demo.yaml")
	}
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	reloads := make(chan error, 2)
	for range 2 {
		go func() { // no t.Fatal off the test goroutine
			req, _ := http.NewRequest("POST", "http://"+AdminAddr+"/v1/reload", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("%d %s", resp.StatusCode, b)
				}
			}
			reloads <- err
		}()
	}
	for range 2 {
		if err := <-reloads; err != nil {
			t.Errorf("reload: %v", err)
		}
	}
	gen := d.Node(Edges[0].Name).Generation()
	for _, e := range Edges {
		if r := get(t, client, "http://"+e.EdgeAddr()+"/reloaded/x", nil); r.header.Get("X-Reloaded") != "yes" {
			t.Errorf("%s after the reload: %d, X-Reloaded %q", e.Name, r.status, r.header.Get("X-Reloaded"))
		}
		if g := d.Node(e.Name).Generation(); g != gen {
			t.Errorf("%s on config generation %d, eu on %d", e.Name, g, gen)
		}
	}

	// 8. Exceed the login rate limit (10/min per client IP) → 429 with Retry-After.
	var limited *result
	for i := 0; i < 15 && limited == nil; i++ {
		// A body the origin rejects at once: bcrypt under -race is slow
		// enough for the limiter to refill between real login attempts.
		r := post(t, client, eu+"/api/users/login", "", `not json`)
		if r.status == 429 {
			limited = &r
		}
	}
	if limited == nil || limited.header.Get("Retry-After") == "" {
		t.Errorf("no 429 with Retry-After after 15 logins: %+v", limited)
	}

	// 9. One origin instance down: API calls still succeed (retry + ejection).
	if err := d.StopOrigin(0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		r := get(t, client, eu+"/api/timeline", map[string]string{"Authorization": "Bearer " + tok})
		if r.status != 200 {
			t.Errorf("with one origin down, call %d: %d %s", i, r.status, r.body)
		}
	}

	// 10. Both down: cached static assets are still served, API calls fail
	// fast with 502/503 instead of hanging.
	get(t, client, eu+"/static/app.js", nil) // cache it first
	if err := d.StopOrigin(1); err != nil {
		t.Fatal(err)
	}
	if r := get(t, client, eu+"/static/app.js", nil); r.status != 200 || r.header.Get("X-Cache") == "MISS" {
		t.Errorf("static with both origins down: %d %s", r.status, r.header.Get("X-Cache"))
	}
	start = time.Now()
	r = get(t, client, eu+"/api/timeline", map[string]string{"Authorization": "Bearer " + tok})
	if r.status != 502 && r.status != 503 {
		t.Errorf("API with both origins down: %d %s", r.status, r.body)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("API failure took %v", el)
	}
}

func queryECS(t *testing.T, proto, server, name, subnet string) (addr string, scope uint8) {
	t.Helper()
	_, ipnet, _ := net.ParseCIDR(subnet)
	ones, _ := ipnet.Mask.Size()
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
	o.SetUDPSize(1232)
	o.Option = append(o.Option, &mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ones), Address: ipnet.IP})
	m.Extra = append(m.Extra, o)
	c := &mdns.Client{Net: proto, Timeout: 3 * time.Second}
	in, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("dns %s %s: %v", proto, server, err)
	}
	for _, rr := range in.Answer {
		if a, ok := rr.(*mdns.A); ok {
			addr = a.A.String()
		}
	}
	if opt := in.IsEdns0(); opt != nil {
		for _, e := range opt.Option {
			if s, ok := e.(*mdns.EDNS0_SUBNET); ok {
				scope = s.SourceScope
			}
		}
	}
	return addr, scope
}

type result struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, c *http.Client, method, url string, hdr map[string]string, body string) result {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Host = "www.demo.test"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, string(b)}
}

func get(t *testing.T, c *http.Client, url string, hdr map[string]string) result {
	t.Helper()
	return do(t, c, "GET", url, hdr, "")
}

func post(t *testing.T, c *http.Client, url, tok, body string) result {
	t.Helper()
	var h map[string]string
	if tok != "" {
		h = map[string]string{"Authorization": "Bearer " + tok}
	}
	return do(t, c, "POST", url, h, body)
}

func login(t *testing.T, c *http.Client, base, user, pass string) (access, refresh string) {
	t.Helper()
	r := post(t, c, base+"/api/users/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass))
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal([]byte(r.body), &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("login %s: %d %s", user, r.status, r.body)
	}
	return tr.AccessToken, tr.RefreshToken
}
