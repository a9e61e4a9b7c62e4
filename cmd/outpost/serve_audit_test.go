package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestServeSIGHUPDuringStartup: `systemctl reload` right after `start`
// sends SIGHUP while the node is still starting. The process must not die
// of it (SIGHUP's default action): it reloads once it is up, and exits 0
// on SIGTERM as usual.
func TestServeSIGHUPDuringStartup(t *testing.T) {
	data := t.TempDir()
	edgeAddr, adminAddr := freePort(t), freePort(t)
	cmd := startServe(t, fmt.Sprintf("data_dir: %q\nedge: {listen: %q}\nadmin: {listen: %q, token: %q}\n"+
		"routes:\n  - {name: app, upstream: \"http://127.0.0.1:9\", cache: {}}\n", data, edgeAddr, adminAddr, "test-token-0123456789"))
	defer cmd.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The data directory is locked early in the start, before the cache
	// and the listeners are opened: signal then.
	waitForLock(t, data, cmd.Process.Pid, 100*time.Microsecond)
	cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get("http://" + adminAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("serve exited after a SIGHUP during startup: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("serve never became ready")
		}
	}
	// The SIGHUP is a reload once the node is up: generation 2.
	for gen := 0; gen != 2; {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/v1/status", nil)
		req.Header.Set("Authorization", "Bearer test-token-0123456789")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var st struct {
				Generation int `json:"config_generation"`
			}
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			gen = st.Generation
		}
		if time.Now().After(deadline) {
			t.Fatalf("the SIGHUP was never applied as a reload (generation %d)", gen)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}

// TestServeReloadUnderLoad: clients keep requesting through the edge while
// the config is reloaded by SIGHUP and POST /v1/reload in turn, some of
// them at once, against a backend that answers slowly: no request fails,
// and the last file is what runs.
func TestServeReloadUnderLoad(t *testing.T) {
	mk := func(body string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(20 * time.Millisecond)
			io.WriteString(w, body)
		}))
	}
	a, b := mk("a"), mk("b")
	defer a.Close()
	defer b.Close()
	edgeAddr, adminAddr := freePort(t), freePort(t)
	const token = "test-token-0123456789"
	path := filepath.Join(t.TempDir(), "outpost.yaml")
	write := func(upstream string) {
		cfg := fmt.Sprintf("edge: {listen: %q}\nadmin: {listen: %q, token: %q}\nroutes:\n  - {name: app, upstream: %q}\n", edgeAddr, adminAddr, token, upstream)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(a.URL)
	cmd := outpost("serve", "--config", path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	get := func() (string, error) {
		resp, err := http.Get("http://" + edgeAddr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return string(body), nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for body, _ := get(); body != "a"; body, _ = get() {
		if time.Now().After(deadline) {
			t.Fatal("serve never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	var total, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				if _, err := get(); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	postReload := func() {
		req, _ := http.NewRequest("POST", "http://"+adminAddr+"/v1/reload", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("reload: %d", resp.StatusCode)
		}
	}
	for i := range 10 {
		write(map[bool]string{true: b.URL, false: a.URL}[i%2 == 0])
		cmd.Process.Signal(syscall.SIGHUP)
		postReload()
		time.Sleep(30 * time.Millisecond)
	}
	write(b.URL)
	cmd.Process.Signal(syscall.SIGHUP)
	postReload()
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || total.Load() < 20 {
		t.Errorf("%d of %d requests failed during reloads (first: %v)", failed.Load(), total.Load(), firstErr.Load())
	}
	if body, err := get(); body != "b" {
		t.Errorf("after the reloads served %q (%v), want b", body, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}
