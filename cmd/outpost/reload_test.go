package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/admin"
	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/node"
)

// TestOverlappingReloadsApplyTheLatestFile: a reload that read the file
// before it was edited must not be applied after a reload that read the
// edit. Reload 1 reads version a and stalls (a slow disk); the file is
// changed to b and reload 2 runs; when reload 1 goes on, the node must end
// up serving what the file says, b.
func TestOverlappingReloadsApplyTheLatestFile(t *testing.T) {
	mk := func(body string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	}
	a, b := mk("a"), mk("b")
	defer a.Close()
	defer b.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "outpost.yaml")
	write := func(upstream string) {
		cfg := fmt.Sprintf("node: n1\ndata_dir: %q\nedge: {listen: 127.0.0.1:0}\nroutes:\n  - {name: app, upstream: %q}\n", dir, upstream)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(a.URL)
	cfg, err := config.Load(path, "")
	if err != nil {
		t.Fatal(config.Format(err))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	n, err := node.New(cfg, node.Options{Logger: log, EdgeListener: ln})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(t.Context())

	// The first load stalls after reading the file until released.
	read1, release1 := make(chan struct{}), make(chan struct{})
	var calls sync.Mutex
	first := true
	loadConfig = func(p, name string) (*config.Config, error) {
		c, err := config.Load(p, name)
		calls.Lock()
		stall := first
		first = false
		calls.Unlock()
		if stall {
			close(read1)
			<-release1
		}
		return c, err
	}
	defer func() { loadConfig = config.Load }()

	const token = "reload-token-0123456789"
	adm := admin.New(token, log)
	adm.Handle("POST /v1/reload", admin.ReloadHandler(newReload(path, "", n, func(*config.Config) error { return nil }, log)))
	srv := httptest.NewServer(adm)
	defer srv.Close()
	post := func() int {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/reload", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	var wg sync.WaitGroup
	codes := make([]int, 2)
	wg.Add(1)
	go func() { defer wg.Done(); codes[0] = post() }()
	<-read1 // reload 1 holds version a
	write(b.URL)
	wg.Add(1)
	go func() { defer wg.Done(); codes[1] = post() }()
	time.Sleep(300 * time.Millisecond) // reload 2 runs (or waits) meanwhile
	close(release1)
	wg.Wait()
	if codes[0] != 200 || codes[1] != 200 {
		t.Fatalf("reloads answered %v", codes)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "b" {
		t.Errorf("after both reloads the node serves %q; the file says b", body)
	}
}
