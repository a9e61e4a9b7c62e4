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

	"github.com/outpost-edge/outpost/internal/redistest"
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

// clusterNode is one `outpost serve` node of a cluster test.
type clusterNode struct{ name, ip, edge, admin, data string }

// clusterRig starts and queries the nodes of a cluster test, all serving
// one cached route to origin.
type clusterRig struct {
	t      *testing.T
	origin string
	nodes  string // the config's nodes: list
	extra  string // more config for every node
}

const clusterToken = "cluster-token-0123456789"

func newClusterRig(t *testing.T, nodes []clusterNode, withAdmin bool, extra string) *clusterRig {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "obj")
	}))
	t.Cleanup(origin.Close)
	var list strings.Builder
	for i := range nodes {
		n := &nodes[i]
		n.edge, n.admin = freePortOn(t, n.ip), freePortOn(t, n.ip)
		if withAdmin {
			fmt.Fprintf(&list, "  - {name: %s, ipv4: %s, admin: \"http://%s\"}\n", n.name, n.ip, n.admin)
		} else {
			fmt.Fprintf(&list, "  - {name: %s, ipv4: %s}\n", n.name, n.ip)
		}
	}
	return &clusterRig{t: t, origin: origin.URL, nodes: list.String(), extra: extra}
}

func (c *clusterRig) start(n clusterNode) *exec.Cmd {
	t := c.t
	t.Helper()
	cmd := startServe(t, fmt.Sprintf("node: %s\ndata_dir: %q\nedge: {listen: %q}\nadmin: {listen: %q, token: %q}\nnodes:\n%s"+
		"routes:\n  - {name: app, upstream: %q, cache: {}}\n%s", n.name, n.data, n.edge, n.admin, clusterToken, c.nodes, c.origin, c.extra))
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

func (c *clusterRig) stop(cmd *exec.Cmd) {
	c.t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		c.t.Errorf("exit: %v", err)
	}
}

func (c *clusterRig) xcache(n clusterNode) string {
	c.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.edge+"/obj", nil)
	req.Host = "www.example.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Header.Get("X-Cache")
}

func (c *clusterRig) purgeVia(n clusterNode, body string) (int, map[string]map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+n.admin+"/v1/purge", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+clusterToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr struct {
		Nodes map[string]map[string]any `json:"nodes"`
	}
	json.NewDecoder(resp.Body).Decode(&pr)
	return resp.StatusCode, pr.Nodes
}

// cachedThenDown makes n cache the object, then stops it.
func (c *clusterRig) cachedThenDown(n clusterNode) {
	c.t.Helper()
	cmd := c.start(n)
	c.xcache(n)
	if got := c.xcache(n); !strings.HasPrefix(got, "HIT") {
		c.t.Fatalf("%s: X-Cache %q, want a HIT", n.name, got)
	}
	c.stop(cmd)
}

// purgeWhileDown starts via and purges the object through it while down
// is down: via applies it, down is reported queued. It returns via.
func (c *clusterRig) purgeWhileDown(via, down clusterNode) *exec.Cmd {
	c.t.Helper()
	cmd := c.start(via)
	status, res := c.purgeVia(via, `{"urls":["http://www.example.test/obj"]}`)
	if status != 207 || res[via.name]["applied"] != true || res[down.name]["queued"] != true {
		c.t.Fatalf("purge with %s down: %d %v", down.name, status, res)
	}
	return cmd
}

// awaitMiss waits for n's cached object to be purged.
func (c *clusterRig) awaitMiss(n clusterNode) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.xcache(n)
		if got == "MISS" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the purge never reached %s (X-Cache %q)", n.name, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServeClusterPurgeReachesNodeThatWasDown runs two `outpost serve`
// nodes, a on 127.0.0.1 and b on 127.0.0.2. A purge through a while b is
// down is queued on a's disk; a restarts (the queue survives), b comes
// back with its cache, and the purge reaches it: the object b had cached
// is a MISS again.
func TestServeClusterPurgeReachesNodeThatWasDown(t *testing.T) {
	nodes := []clusterNode{
		{name: "a", ip: "127.0.0.1", data: t.TempDir()},
		{name: "b", ip: "127.0.0.2", data: t.TempDir()},
	}
	c := newClusterRig(t, nodes, true, "")
	c.cachedThenDown(nodes[1])

	a := c.purgeWhileDown(nodes[0], nodes[1])
	c.stop(a)
	a = c.start(nodes[0])
	defer c.stop(a)
	b := c.start(nodes[1])
	defer c.stop(b)
	if got := c.xcache(nodes[1]); !strings.HasPrefix(got, "HIT") {
		t.Fatalf("b after its restart: X-Cache %q, want its cached HIT until the purge arrives", got)
	}
	// A new purge through a finds b up, so b's backlog follows at once.
	status, res := c.purgeVia(nodes[0], `{"tags":["unrelated"]}`)
	if status != 200 {
		t.Fatalf("purge with both up: %d %v", status, res)
	}
	c.awaitMiss(nodes[1])
}

// TestServeClusterPurgeStream runs two `outpost serve` nodes that share a
// real redis-server and cannot reach each other's admin APIs (the config
// lists none). A purge through a while b is down waits in the Redis
// stream; a stops for good, b comes back and applies it. With both up, a
// purge is answered by the other node at once.
func TestServeClusterPurgeStream(t *testing.T) {
	rs := redistest.Start(t)
	nodes := []clusterNode{
		{name: "a", ip: "127.0.0.1", data: t.TempDir()},
		{name: "b", ip: "127.0.0.2", data: t.TempDir()},
	}
	c := newClusterRig(t, nodes, false, fmt.Sprintf("redis: {addr: %q}\n", rs.Addr))
	c.cachedThenDown(nodes[1])

	a := c.purgeWhileDown(nodes[0], nodes[1])
	c.stop(a)
	b := c.start(nodes[1])
	defer c.stop(b)
	c.awaitMiss(nodes[1])

	a = c.start(nodes[0])
	defer c.stop(a)
	c.xcache(nodes[0])
	if got := c.xcache(nodes[0]); !strings.HasPrefix(got, "HIT") {
		t.Fatalf("a: X-Cache %q, want a HIT", got)
	}
	status, res := c.purgeVia(nodes[1], `{"all":true}`)
	if status != 200 || res["a"]["applied"] != true || res["a"]["purged"] != float64(1) {
		t.Fatalf("purge through b with a up: %d %v", status, res)
	}
	if got := c.xcache(nodes[0]); got != "MISS" {
		t.Errorf("a after the purge: X-Cache %q, want MISS", got)
	}
}
