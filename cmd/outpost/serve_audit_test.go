package main

import (
	"encoding/json"
	"fmt"
	"net/http"
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
