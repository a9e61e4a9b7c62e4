package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func freePortOn(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeClusterPurgeReachesNodeThatWasDown runs two `outpost serve`
// nodes, a on 127.0.0.1 and b on 127.0.0.2. A purge through a while b is
// down is queued on a's disk; a restarts (the queue survives), b comes
// back with its cache, and the purge reaches it: the object b had cached
// is a MISS again.
func TestServeClusterPurgeReachesNodeThatWasDown(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "obj")
	}))
	defer origin.Close()
	const token = "cluster-token-0123456789"
	type nodeAddrs struct{ name, ip, edge, admin, data string }
	nodes := []nodeAddrs{
		{name: "a", ip: "127.0.0.1", data: t.TempDir()},
		{name: "b", ip: "127.0.0.2", data: t.TempDir()},
	}
	var list strings.Builder
	for i := range nodes {
		n := &nodes[i]
		n.edge, n.admin = freePortOn(t, n.ip), freePortOn(t, n.ip)
		fmt.Fprintf(&list, "  - {name: %s, ipv4: %s, admin: \"http://%s\"}\n", n.name, n.ip, n.admin)
	}
	start := func(n nodeAddrs) *exec.Cmd {
		t.Helper()
		cmd := startServe(t, fmt.Sprintf("node: %s\ndata_dir: %q\nedge: {listen: %q}\nadmin: {listen: %q, token: %q}\nnodes:\n%s"+
			"routes:\n  - {name: app, upstream: %q, cache: {}}\n", n.name, n.data, n.edge, n.admin, token, list.String(), origin.URL))
		deadline := time.Now().Add(10 * time.Second)
		for {
			if resp, err := http.Get("http://" + n.admin + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return cmd
				}
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("node %s never became ready", n.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stop := func(cmd *exec.Cmd) {
		t.Helper()
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("exit: %v", err)
		}
	}
	xcache := func(n nodeAddrs) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+n.edge+"/obj", nil)
		req.Host = "www.example.test"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Cache")
	}
	purgeVia := func(n nodeAddrs, body string) (int, map[string]map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+n.admin+"/v1/purge", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var pr struct {
			Nodes map[string]map[string]any `json:"nodes"`
		}
		json.NewDecoder(resp.Body).Decode(&pr)
		return resp.StatusCode, pr.Nodes
	}

	// b caches the object, then goes down.
	b := start(nodes[1])
	xcache(nodes[1])
	if got := xcache(nodes[1]); !strings.HasPrefix(got, "HIT") {
		t.Fatalf("b: X-Cache %q, want a HIT", got)
	}
	stop(b)

	a := start(nodes[0])
	status, res := purgeVia(nodes[0], `{"urls":["http://www.example.test/obj"]}`)
	if status != 207 || res["a"]["applied"] != true || res["b"]["queued"] != true {
		t.Fatalf("purge with b down: %d %v", status, res)
	}
	stop(a)
	a = start(nodes[0])
	defer stop(a)
	b = start(nodes[1])
	defer stop(b)
	if got := xcache(nodes[1]); !strings.HasPrefix(got, "HIT") {
		t.Fatalf("b after its restart: X-Cache %q, want its cached HIT until the purge arrives", got)
	}
	// A new purge through a finds b up, so b's backlog follows at once.
	status, res = purgeVia(nodes[0], `{"tags":["unrelated"]}`)
	if status != 200 {
		t.Fatalf("purge with both up: %d %v", status, res)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := xcache(nodes[1])
		if got == "MISS" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queued purge never reached b (X-Cache %q)", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
