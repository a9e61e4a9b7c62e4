package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/edge"
	"github.com/outpost-edge/outpost/internal/logtest"
)

// TestMain lets tests run the real binary: the test executable re-execs
// itself with OUTPOST_MAIN=1 and behaves as `outpost`.
func TestMain(m *testing.M) {
	if os.Getenv("OUTPOST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func outpost(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "OUTPOST_MAIN=1")
	return cmd
}

func TestHelpDocumentsEveryCommand(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"help"}, &out, io.Discard); code != 0 {
		t.Fatalf("help exit %d", code)
	}
	for _, c := range commands() {
		if !strings.Contains(out.String(), c.name) {
			t.Errorf("help does not list %s", c.name)
		}
		var h bytes.Buffer
		if code := run([]string{"help", c.name}, &h, io.Discard); code != 0 || !strings.Contains(h.String(), "usage: outpost "+c.name) {
			t.Errorf("help %s: exit %d, %q", c.name, code, h.String())
		}
	}
	if code := run([]string{"frobnicate"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("unknown command exit %d, want 2", code)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("edge:\n  listen: 127.0.0.1:8080\nroutes:\n  - {name: a, upstream: \"http://127.0.0.1:9001\"}\n"), 0o644)
	os.WriteFile(bad, []byte("edge:\n  listen: 127.0.0.1:8080\n  bogus: 1\nlog:\n  level: loud\n"), 0o644)

	out, err := outpost("check-config", good).CombinedOutput()
	if err != nil {
		t.Fatalf("valid config: %v\n%s", err, out)
	}
	cmd := outpost("check-config", bad)
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("invalid config: exit %v\n%s", err, out)
	}
	for _, want := range []string{"bad.yaml:3: edge.bogus: unknown key", "bad.yaml:5: log.level: unknown level"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeReloadAndSignals runs `outpost serve`, reloads it with SIGHUP
// and POST /v1/reload (a broken file is rejected and the old config stays),
// then stops it with SIGTERM and expects exit status 0.
func TestServeReloadAndSignals(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }))
	defer b.Close()
	edgeAddr, adminAddr := freePort(t), freePort(t)
	const token = "test-token-0123456789"
	path := filepath.Join(t.TempDir(), "outpost.yaml")
	write := func(upstream string, extra string) {
		cfg := fmt.Sprintf("node: n1\nlog: {level: info}\nedge: {listen: %q}\nadmin: {listen: %q, token: %q}\nroutes:\n  - {name: app, upstream: %q}\n%s",
			edgeAddr, adminAddr, token, upstream, extra)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(a.URL, "")
	cmd := outpost("serve", "--config", path)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	defer cmd.Process.Kill()

	get := func() string {
		resp, err := http.Get("http://" + edgeAddr + "/")
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for get() != want {
			if time.Now().After(deadline) {
				t.Fatalf("never served %q (last %q)", want, get())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("a")

	write(b.URL, "")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("b")

	// A broken config through the admin API: 422 with the errors, old config stays.
	write(a.URL, "bogus: true\n")
	req, _ := http.NewRequest("POST", "http://"+adminAddr+"/v1/reload", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 422 || !strings.Contains(string(body), `unknown key \"bogus\"`) {
		t.Errorf("bad reload: %d %s", resp.StatusCode, body)
	}
	if got := get(); got != "b" {
		t.Errorf("after rejected reload served %q, want b", got)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() {
		for range logs {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}

// TestServeRefusesSharedDataDir: a second process on a data directory in
// use stops at once, naming the holder; the first keeps serving.
func TestServeRefusesSharedDataDir(t *testing.T) {
	data := t.TempDir()
	const token = "test-token-0123456789"
	config := func() string {
		edge, adm := freePort(t), freePort(t)
		path := filepath.Join(t.TempDir(), "outpost.yaml")
		cfg := fmt.Sprintf("data_dir: %q\nedge: {listen: %q}\nadmin: {listen: %q, token: %q}\n"+
			"routes:\n  - {name: app, upstream: \"http://127.0.0.1:9\", cache: {}}\n", data, edge, adm, token)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	first := outpost("serve", "--config", config())
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { first.Process.Signal(syscall.SIGTERM); first.Wait() }()
	waitForLock(t, data, first.Process.Pid, 20*time.Millisecond)
	var stderr bytes.Buffer
	second := outpost("serve", "--config", config())
	second.Stderr = &stderr
	err := second.Run()
	if code := second.ProcessState.ExitCode(); err == nil || code != 1 {
		t.Fatalf("second serve: exit %d (%v), want 1", code, err)
	}
	want := fmt.Sprintf("in use by another outpost process (pid %d)", first.Process.Pid)
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
	if first.ProcessState != nil {
		t.Error("the first process exited")
	}
}

// startServe starts `outpost serve` on the config text cfg.
func startServe(t *testing.T, cfg string) *exec.Cmd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outpost.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := outpost("serve", "--config", path)
	// What the process said, for a test that fails (a port taken by a
	// parallel package's test between freePort and the bind, say).
	stderr := &logtest.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("outpost serve stderr:\n%s", stderr.String())
		}
	})
	return cmd
}

// waitForLock waits, polling every poll, until the lock file of data
// names pid: that process is starting with data as its data directory.
func waitForLock(t *testing.T, data string, pid int, poll time.Duration) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, _ := os.ReadFile(filepath.Join(data, "outpost.lock")); strings.TrimSpace(string(b)) == fmt.Sprint(pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never locked the data directory", pid)
		}
		time.Sleep(poll)
	}
}

// TestServeShutdownDelay: after SIGTERM with edge.shutdown_delay set, the
// node keeps serving while its health endpoints (the edge's, which peers'
// DNS probes, and the admin /readyz) answer 503; a second SIGTERM ends the
// wait and the process exits 0.
func TestServeShutdownDelay(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") }))
	defer up.Close()
	edgeAddr, adminAddr := freePort(t), freePort(t)
	cmd := startServe(t, fmt.Sprintf("node: n1\nedge: {listen: %q, shutdown_delay: 5m}\nadmin: {listen: %q, token: %q}\nroutes:\n  - {name: app, upstream: %q}\n",
		edgeAddr, adminAddr, "test-token-0123456789", up.URL))
	defer cmd.Process.Kill()
	status := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	edgeHealth, ready, app := "http://"+edgeAddr+edge.HealthPath, "http://"+adminAddr+"/readyz", "http://"+edgeAddr+"/"
	deadline := time.Now().Add(10 * time.Second)
	for status(ready) != 200 || status(app) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("serve never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := status(edgeHealth); got != 200 {
		t.Fatalf("edge health before SIGTERM: %d", got)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	deadline = time.Now().Add(10 * time.Second)
	for status(edgeHealth) != 503 {
		if time.Now().After(deadline) {
			t.Fatalf("edge health still %d after SIGTERM", status(edgeHealth))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := status(ready); got != 503 {
		t.Errorf("/readyz while draining: %d, want 503", got)
	}
	if got := status(app); got != 200 {
		t.Errorf("request while draining: %d, want 200 (still serving)", got)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after the second SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a second SIGTERM did not end the drain")
	}
}

// The access log on a real process: request lines gathered for a minute
// (log.access_flush) still all come out when the process stops, before
// its "shutting down" line, as they were logged; with access_buffer 0
// each comes out at once.
func TestServeAccessLog(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	for _, tc := range []struct{ name, log string }{
		{"gathered", "{access_flush: 1m}"},
		{"unbuffered", "{access_buffer: 0}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The admin API on a port of its own: the default one may be
			// another test's, or another program's, just now.
			edgeAddr, adminAddr := freePort(t), freePort(t)
			path := filepath.Join(t.TempDir(), "outpost.yaml")
			cfg := fmt.Sprintf("node: n1\nlog: %s\nedge: {listen: %q}\nadmin: {listen: %q, token: %q}\nroutes:\n  - {name: app, upstream: %q}\n",
				tc.log, edgeAddr, adminAddr, "test-token-0123456789", up.URL)
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := outpost("serve", "--config", path)
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			lines := make(chan string, 1000)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			var seen []string
			wait := func(what string) {
				t.Helper()
				timeout := time.After(15 * time.Second)
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("stderr ended before %s: %q", what, seen)
						}
						seen = append(seen, l)
						if strings.Contains(l, what) {
							return
						}
					case <-timeout:
						t.Fatalf("no %s in %q", what, seen)
					}
				}
			}
			wait(`"msg":"outpost started"`)
			for i := range 3 {
				res, err := http.Get(fmt.Sprintf("http://%s/p%d", edgeAddr, i))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			if tc.name == "unbuffered" {
				wait(`"path":"/p2"`) // before any shutdown
			}
			cmd.Process.Signal(syscall.SIGTERM)
			wait(`"msg":"stopped"`)
			var order []string
			for _, l := range seen {
				for _, k := range []string{`"path":"/p0"`, `"path":"/p1"`, `"path":"/p2"`, `"msg":"shutting down"`} {
					if strings.Contains(l, k) {
						order = append(order, k)
					}
				}
			}
			want := []string{`"path":"/p0"`, `"path":"/p1"`, `"path":"/p2"`, `"msg":"shutting down"`}
			if fmt.Sprint(order) != fmt.Sprint(want) {
				t.Fatalf("lines in order %q, want %q; stderr:\n%s", order, want, strings.Join(seen, "\n"))
			}
		})
	}
}
