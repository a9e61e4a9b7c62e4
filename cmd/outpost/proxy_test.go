package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestProxyQuickMode runs `outpost proxy` as users type it: a caching
// proxy over two origins (MISS, then HIT, then purged by `outpost purge`
// through its admin API), and with --no-cache a balancer that alternates.
func TestProxyQuickMode(t *testing.T) {
	origin := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=600")
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := origin("a"), origin("b")
	const token = "proxy-test-token-0123456789"
	start := func(args ...string) string {
		t.Helper()
		listen := freePort(t)
		cmd := outpost(append([]string{"proxy", "--listen", listen, "--origin", a.URL, "--origin", b.URL,
			"--access-log=false"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			if t.Failed() {
				t.Logf("proxy stderr:\n%s", stderr.String())
			}
		})
		deadline := time.Now().Add(15 * time.Second)
		for {
			if res, err := http.Get("http://" + listen + "/"); err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					return listen
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("proxy on %s never served", listen)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	get := func(addr, path string) (string, string) {
		t.Helper()
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return string(body), res.Header.Get("X-Cache")
	}

	t.Run("caching", func(t *testing.T) {
		adminAddr := freePort(t)
		addr := start("--cache-dir", filepath.Join(t.TempDir(), "cache"), "--admin", adminAddr, "--token", token,
			"--health-path", "/")
		if _, xc := get(addr, "/static/app.css"); xc != "MISS" {
			t.Fatalf("first GET: X-Cache %q, want MISS", xc)
		}
		first, xc := get(addr, "/static/app.css")
		if xc != "HIT" {
			t.Fatalf("second GET: X-Cache %q, want HIT", xc)
		}
		purge := outpost("purge", "--admin", "http://"+adminAddr, "--token", token, "http://"+addr+"/static/app.css")
		out, err := purge.Output()
		if err != nil {
			t.Fatalf("outpost purge: %v\n%s", err, out)
		}
		var pr struct {
			Purged int `json:"purged"`
		}
		if err := json.Unmarshal(out, &pr); err != nil || pr.Purged != 1 {
			t.Fatalf("purge answered %s (%v), want purged 1", out, err)
		}
		again, xc := get(addr, "/static/app.css")
		if xc != "MISS" {
			t.Fatalf("after purge: X-Cache %q, want MISS", xc)
		}
		if first == "" || again == "" {
			t.Fatal("empty bodies")
		}
		// The pools view through the admin API: token required.
		req, _ := http.NewRequest(http.MethodGet, "http://"+adminAddr+"/v1/pools", nil)
		if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /v1/pools without token: %v %v", res, err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var pools struct {
			Pools []struct {
				Name     string `json:"name"`
				Policy   string `json:"policy"`
				Backends []struct {
					URL    string `json:"url"`
					Health string `json:"health"`
				} `json:"backends"`
			} `json:"pools"`
		}
		err = json.NewDecoder(res.Body).Decode(&pools)
		res.Body.Close()
		if err != nil || len(pools.Pools) != 1 || len(pools.Pools[0].Backends) != 2 || pools.Pools[0].Policy != "round_robin" {
			t.Fatalf("GET /v1/pools: %+v (%v)", pools, err)
		}
		for _, be := range pools.Pools[0].Backends {
			if be.URL != a.URL && be.URL != b.URL {
				t.Errorf("unknown backend %q", be.URL)
			}
			if be.Health == "" {
				t.Errorf("backend %s: no health state", be.URL)
			}
		}
		// No config file, so no reload to claim.
		req, _ = http.NewRequest(http.MethodPost, "http://"+adminAddr+"/v1/reload", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusNotFound {
			t.Fatalf("POST /v1/reload on proxy: %v %v, want 404", res, err)
		} else {
			res.Body.Close()
		}
		bad := outpost("purge", "--admin", "http://"+adminAddr, "--token", "wrong-token-0123456789", "--all")
		if err := bad.Run(); bad.ProcessState.ExitCode() != 1 {
			t.Fatalf("purge with a wrong token: exit %d (%v), want 1", bad.ProcessState.ExitCode(), err)
		}
	})

	t.Run("no-cache balances", func(t *testing.T) {
		// Passive checks only: both origins take traffic from the start;
		// the same with net/http serving everything (--fast-http1=false).
		for _, fast := range []string{"--fast-http1=true", "--fast-http1=false"} {
			addr := start("--no-cache", "--policy", "round_robin", fast)
			seen := map[string]int{}
			for i := 0; i < 10; i++ {
				body, xc := get(addr, "/static/app.css")
				if xc == "HIT" || xc == "MISS" {
					t.Fatalf("%s: --no-cache still caches: X-Cache %q", fast, xc)
				}
				seen[body]++
			}
			if seen["a"] != 5 || seen["b"] != 5 {
				t.Fatalf("%s: round robin over two origins: %v", fast, seen)
			}
		}
	})

	t.Run("bad policy", func(t *testing.T) {
		cmd := outpost("proxy", "--listen", freePort(t), "--origin", a.URL, "--policy", "bogus")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(stderr.String(), "policy") {
			t.Fatalf("--policy bogus: exit %d (%v), stderr %q", cmd.ProcessState.ExitCode(), err, stderr.String())
		}
	})
}

// purgeAll runs `outpost purge --all` against the admin API at url.
func purgeAll(url string) (stdout []byte, stderr *bytes.Buffer, code int) {
	cmd := outpost("purge", "--admin", url, "--token", "tok-0123456789abcdef", "--all")
	stderr = &bytes.Buffer{}
	cmd.Stderr = stderr
	stdout, _ = cmd.Output()
	return stdout, stderr, cmd.ProcessState.ExitCode()
}

// TestPurgeReportsPartial: a purge some node did not apply (207) exits 3
// and names the nodes, so a deploy script does not take it for done.
func TestPurgeReportsPartial(t *testing.T) {
	adm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/purge" || r.Header.Get("Authorization") != "Bearer tok-0123456789abcdef" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusMultiStatus)
		fmt.Fprint(w, `{"purged":2,"nodes":{"eu":{"purged":2,"applied":true},"us":{"purged":0,"applied":false,"queued":true,"error":"connection refused"},"ap":{"purged":0,"applied":false,"error":"500 internal"}}}`)
	}))
	defer adm.Close()
	out, stderr, code := purgeAll(adm.URL)
	if code != 3 {
		t.Fatalf("exit %d, want 3; stdout %s stderr %s", code, out, stderr.String())
	}
	want := "not applied everywhere: ap (500 internal), us (queued: applied when it is back)"
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q lacks %q", stderr.String(), want)
	}
	if !strings.Contains(string(out), `"purged":2`) {
		t.Errorf("stdout lacks the response: %s", out)
	}
}

// TestPurgeDoesNotFollowRedirects: an --admin URL that redirects (a
// proxy's http→https hop, a wrong port) is reported, not followed: Go's
// client would resend the token to whatever port of that host the
// redirect names, as a GET without the purge, and a 200 page there would
// read as success.
func TestPurgeDoesNotFollowRedirects(t *testing.T) {
	var leaked atomic.Int32
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		fmt.Fprint(w, `{"purged":0,"nodes":{}}`)
	}))
	defer page.Close()
	adm := httptest.NewServer(http.RedirectHandler(page.URL+"/v1/purge", http.StatusFound))
	defer adm.Close()
	out, stderr, code := purgeAll(adm.URL)
	if code != 1 {
		t.Errorf("exit %d, want 1; stdout %s stderr %s", code, out, stderr.String())
	}
	if !strings.Contains(string(out)+stderr.String(), page.URL) {
		t.Errorf("the redirect is not named: stdout %s stderr %s", out, stderr.String())
	}
	if leaked.Load() != 0 {
		t.Error("the token was sent to the redirect's target")
	}
}
