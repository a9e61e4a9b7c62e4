package dns

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestReloadUnderLoad reloads repeatedly while clients query: every query
// is answered.
func TestReloadUnderLoad(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	s, addr := startServer(t, cfg, nil, Options{})
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
		done   atomic.Bool
		total  atomic.Int64
	)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &mdns.Client{Net: "udp", Timeout: 3 * time.Second}
			for !done.Load() {
				r, _, err := c.Exchange(newQuery("www.example.com.", mdns.TypeA), addr)
				total.Add(1)
				if err != nil || len(r.Answer) != 1 {
					failed.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		if err := s.Reload(cfg, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.AddRecord(mustRR(t, fmt.Sprintf(`_acme-challenge.example.com. 60 IN TXT "%d"`, i))); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d queries failed during reloads", failed.Load(), total.Load())
	}
}

// TestShutdownLeaks starts and stops servers and checks no goroutines
// are left behind (listeners, TCP connections, health probes).
func TestShutdownLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
		cfg.Health.Disabled = false
		s, err := New(cfg, demoNodes(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		pc, ln := listenPair(t, "127.0.0.1")
		if err := s.Serve([]net.PacketConn{pc}, []net.Listener{ln}); err != nil {
			t.Fatal(err)
		}
		// An open, idle TCP connection must not hold Shutdown up.
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		exchange(t, pc.LocalAddr().String(), "tcp", newQuery("www.example.com.", mdns.TypeA))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
