package cdn

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond (real time) with a generous bound; it never asserts
// wall-clock durations, it only avoids hanging forever.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestCoalescing100Misses(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, strings.Repeat("z", 50000))
	})
	const n = 100
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.front.URL+"/c", nil)
			res, err := e.client.Do(req)
			if err != nil {
				bad.Add(1)
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || len(b) != 50000 {
				bad.Add(1)
			}
		}()
	}
	waitFor(t, "all requests in", func() bool { return e.entered.Load() == n && e.hits() == 1 })
	time.Sleep(50 * time.Millisecond) // let followers reach the fill
	close(release)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d bad responses", bad.Load())
	}
	if e.hits() != 1 {
		t.Fatalf("origin fetched %d times, want 1", e.hits())
	}
	if got := e.metric("outpost_cache_coalesced_total"); got < 1 {
		t.Errorf("coalesced metric %v", got)
	}
}

// TestCoalescingPanicSafe: the leader's upstream panics; the waiting
// requests are released and fetch for themselves instead of hanging.
func TestCoalescingPanicSafe(t *testing.T) {
	var calls atomic.Int64
	gate := make(chan struct{})
	e := newEnv(t, static("ok", "Cache-Control: max-age=60"), withUpstream(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				<-gate
				panic("upstream exploded")
			}
			next.ServeHTTP(w, r)
		})
	}))
	e.front.Config.ErrorLog = nil
	const n = 10
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.client.Get(e.front.URL + "/p")
			if err != nil {
				return // the panicking leader's connection is cut
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 && string(b) == "ok" {
				ok.Add(1)
			}
		}()
	}
	waitFor(t, "requests in", func() bool { return e.entered.Load() == n && calls.Load() == 1 })
	time.Sleep(50 * time.Millisecond)
	close(gate)
	wg.Wait()
	if ok.Load() != n-1 {
		t.Fatalf("%d of %d followers served", ok.Load(), n-1)
	}
}

// TestStreamingWhileWriting: the first client, and a coalesced second one,
// receive the beginning of the body while the origin is still sending it.
func TestStreamingWhileWriting(t *testing.T) {
	first := bytes.Repeat([]byte("a"), 1<<20)
	rest := bytes.Repeat([]byte("b"), 4<<20)
	cont := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "5242880")
		w.Write(first)
		w.(http.Flusher).Flush()
		<-cont
		w.Write(rest)
	})
	type result struct {
		body []byte
		err  error
	}
	read := func(got chan<- int, done chan<- result) {
		res, err := e.client.Get(e.front.URL + "/big")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer res.Body.Close()
		buf := make([]byte, len(first))
		if _, err := io.ReadFull(res.Body, buf); err != nil {
			done <- result{err: err}
			return
		}
		got <- len(buf)
		more, err := io.ReadAll(res.Body)
		done <- result{body: append(buf, more...), err: err}
	}
	got1, done1 := make(chan int, 1), make(chan result, 1)
	go read(got1, done1)
	<-got1 // first MiB arrived while the origin is blocked
	got2, done2 := make(chan int, 1), make(chan result, 1)
	go read(got2, done2)
	<-got2 // the follower streams from the growing file too
	if e.hits() != 1 {
		t.Fatalf("origin hits %d", e.hits())
	}
	close(cont)
	for _, d := range []chan result{done1, done2} {
		r := <-d
		if r.err != nil || len(r.body) != 5<<20 || !bytes.Equal(r.body[len(first):], rest) {
			t.Fatalf("body: len %d err %v", len(r.body), r.err)
		}
	}
	waitFor(t, "stored", func() bool { return e.cache.Objects() == 1 })
	r := e.get("/big")
	if r.Header.Get("X-Cache") != "HIT" || len(r.body) != 5<<20 {
		t.Fatalf("after: %q %d", r.Header.Get("X-Cache"), len(r.body))
	}
}

// TestTruncatedOriginNotStored: an origin that breaks off mid-body is not
// stored and the client sees a broken response, not a short complete one.
func TestTruncatedOriginNotStored(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "100000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	res, err := e.client.Get(e.front.URL + "/t")
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Fatal("truncated body read without error")
	}
	if e.cache.Objects() != 0 {
		t.Fatal("truncated object stored")
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	var version atomic.Int64
	version.Store(1)
	gate := make(chan struct{})
	var gated atomic.Bool
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if gated.Load() {
			<-gate
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		io.WriteString(w, "v"+string(rune('0'+version.Load())))
	})
	// Registered after newEnv, so it runs before the cache's Close, which
	// waits for the gated background refresh: a failing test must not hang.
	var openGate sync.Once
	release := func() { openGate.Do(func() { close(gate) }) }
	t.Cleanup(release)
	if r := e.get("/s"); r.body != "v1" {
		t.Fatal(r.body)
	}
	e.clock.Advance(5 * time.Second)
	version.Store(2)
	gated.Store(true)
	for i := 0; i < 20; i++ {
		r := e.get("/s")
		if r.Header.Get("X-Cache") != "STALE" || r.body != "v1" {
			t.Fatalf("stale %d: %q %q", i, r.Header.Get("X-Cache"), r.body)
		}
	}
	// The refresh runs in the background: it reaches the origin soon, but
	// not necessarily before the stale answers above are back.
	waitFor(t, "the background refresh at the origin", func() bool { return e.hits() >= 2 })
	if e.hits() != 2 {
		t.Fatalf("origin hits %d, want 2 (one background refresh)", e.hits())
	}
	release()
	waitFor(t, "refresh", func() bool {
		r := e.get("/s")
		return r.body == "v2" && r.Header.Get("X-Cache") == "HIT"
	})
	if e.hits() != 2 {
		t.Fatalf("origin hits %d", e.hits())
	}
}

func TestStaleIfErrorAndGrace(t *testing.T) {
	// How the origin fails after the fill: a 500, stopped, or too slow to
	// answer within the upstream's timeout (the proxy then writes a 504).
	const (
		status500 = "500"
		down      = "down"
		slow      = "slow"
	)
	cases := []struct {
		name    string
		cc      string
		grace   time.Duration
		advance time.Duration
		fail    string
		stale   bool
	}{
		{"stale-if-error on 500", "max-age=1, stale-if-error=60", 0, 30 * time.Second, status500, true},
		{"stale-if-error origin down", "max-age=1, stale-if-error=60", 0, 30 * time.Second, down, true},
		{"stale-if-error origin timeout", "max-age=1, stale-if-error=60", 0, 30 * time.Second, slow, true},
		{"past stale-if-error", "max-age=1, stale-if-error=60", 0, 2 * time.Minute, status500, false},
		{"grace origin down", "max-age=1", time.Hour, 30 * time.Minute, down, true},
		{"grace origin timeout", "max-age=1", time.Hour, 30 * time.Minute, slow, true},
		{"past grace", "max-age=1", time.Hour, 2 * time.Hour, down, false},
		{"past grace origin timeout", "max-age=1", time.Hour, 2 * time.Hour, slow, false},
		{"must-revalidate forbids", "max-age=1, must-revalidate", time.Hour, time.Minute, status500, false},
		{"proxy-revalidate forbids", "max-age=1, proxy-revalidate", time.Hour, time.Minute, status500, false},
		{"proxy-revalidate forbids stale-if-error", "max-age=1, stale-if-error=60, proxy-revalidate", 0, 30 * time.Second, down, false},
		// no-cache (RFC 9111 §5.2.2.4, §4.2.4): never used without a
		// successful validation, so neither grace nor stale-if-error
		// serves it when the validation fails.
		{"no-cache forbids grace", "max-age=60, no-cache", time.Hour, 0, status500, false},
		{"no-cache forbids stale-if-error", "max-age=1, no-cache, stale-if-error=60", 0, 30 * time.Second, down, false},
		// s-maxage carries proxy-revalidate's semantics (§5.2.2.10): grace,
		// which the origin never asked for, does not apply; an explicit
		// stale-if-error still does (a documented choice).
		{"s-maxage forbids grace", "s-maxage=1", time.Hour, time.Minute, status500, false},
		{"s-maxage forbids grace origin down", "max-age=600, s-maxage=1", time.Hour, time.Minute, down, false},
		{"s-maxage with stale-if-error", "s-maxage=1, stale-if-error=60", 0, 30 * time.Second, status500, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.grace
			opts := []envOpt{withConfig(func(c *Config) {
				d := unitsDuration(g)
				c.Grace = &d
			})}
			if tc.fail == slow {
				// Real time, but never asserted on: only bounds the wait.
				opts = append(opts, withUpstreamTimeout(300*time.Millisecond))
			}
			e := newEnv(t, static("good", "Cache-Control: "+tc.cc), opts...)
			e.get("/e")
			e.clock.Advance(tc.advance)
			switch tc.fail {
			case down:
				e.origin.srv.Close()
			case slow:
				// Hangs until the proxy gives up and drops the connection.
				e.origin.set(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
			default:
				e.origin.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
			}
			r := e.get("/e")
			if tc.stale {
				if r.StatusCode != 200 || r.body != "good" || r.Header.Get("X-Cache") != "STALE" {
					t.Fatalf("want stale: %d %q %q", r.StatusCode, r.body, r.Header.Get("X-Cache"))
				}
			} else if r.StatusCode < 500 {
				t.Fatalf("want error passed through, got %d %q", r.StatusCode, r.Header.Get("X-Cache"))
			}
			if tc.fail == slow && !tc.stale && r.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("timeout: status %d, want 504", r.StatusCode)
			}
		})
	}
}

// TestLargeObjectNotBuffered: a 64 MiB object goes through a miss and a hit
// while the process allocates far less than its size.
func TestLargeObjectNotBuffered(t *testing.T) {
	const size = 64 << 20
	chunk := bytes.Repeat([]byte("L"), 256<<10)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "67108864")
		for i := 0; i < size/len(chunk); i++ {
			w.Write(chunk)
		}
	}, withConfig(func(c *Config) { c.MaxSize = 256 << 20 }))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, want := range []string{"MISS", "HIT"} {
		res, err := e.client.Get(e.front.URL + "/huge")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil || n != size || res.Header.Get("X-Cache") != want {
			t.Fatalf("%s: %d bytes, %v, %q", want, n, err, res.Header.Get("X-Cache"))
		}
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 24<<20 {
		t.Fatalf("allocated %d MiB to move 2 x 64 MiB", alloc>>20)
	} else {
		t.Logf("allocated %d KiB to move 2 x 64 MiB", alloc>>10)
	}
}

// TestTrickleReachesClients: a storable body the origin sends a little at
// a time (flushing) reaches the leader's client and a coalesced follower
// as it comes, not when a buffer fills or the body ends: both read from
// the growing file, and what they copied is flushed before each wait.
func TestTrickleReachesClients(t *testing.T) {
	cont := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(cont) }) }
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "200")
		io.WriteString(w, strings.Repeat("a", 100))
		w.(http.Flusher).Flush()
		<-cont
		io.WriteString(w, strings.Repeat("b", 100))
	})
	first := func() (*http.Response, []byte) {
		t.Helper()
		res, err := e.client.Get(e.front.URL + "/trickle")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		read := make(chan error, 1)
		go func() { _, err := io.ReadFull(res.Body, buf); read <- err }()
		select {
		case err := <-read:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the first 100 bytes, flushed by the origin, did not arrive")
		}
		return res, buf
	}
	t.Cleanup(release)    // registered after newEnv's: runs before the servers close
	lres, lbuf := first() // the origin is blocked: these 100 bytes were flushed
	fres, fbuf := first()
	if cs := fres.Header.Get("Cache-Status"); !strings.Contains(cs, "collapsed") {
		t.Fatalf("second client did not follow the fill: Cache-Status %q", cs)
	}
	release()
	for i, res := range []*http.Response{lres, fres} {
		rest, err := io.ReadAll(res.Body)
		res.Body.Close()
		got := string([][]byte{lbuf, fbuf}[i]) + string(rest)
		if err != nil || got != strings.Repeat("a", 100)+strings.Repeat("b", 100) {
			t.Fatalf("client %d: %q, %v", i, got, err)
		}
	}
}

// TestUpstreamPanicMidBodyCutsClients: the upstream panics after the
// header and part of a storable body. The leading client, reading from
// the body file, and a follower are both cut — neither waits for bytes
// that will never come, nor gets a short body passed off as whole — and
// nothing is stored.
func TestUpstreamPanicMidBodyCutsClients(t *testing.T) {
	boom := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(boom) }) }
	e := newEnv(t, static("unused"), withUpstream(func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Content-Length", "100000")
			w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
			<-boom
			panic("upstream exploded mid-body")
		})
	}))
	e.front.Config.ErrorLog = nil
	t.Cleanup(release)
	type result struct {
		n   int64
		err error
	}
	get := func(out chan<- result) {
		res, err := e.client.Get(e.front.URL + "/mid")
		if err != nil {
			out <- result{err: err}
			return
		}
		n, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		out <- result{n, err}
	}
	lead, follow := make(chan result, 1), make(chan result, 1)
	go get(lead)
	waitFor(t, "the leader's fill", func() bool { return e.entered.Load() == 1 })
	go get(follow)
	waitFor(t, "the follower", func() bool { return e.entered.Load() == 2 })
	release()
	for name, ch := range map[string]chan result{"leader": lead, "follower": follow} {
		select {
		case r := <-ch:
			if r.err == nil {
				t.Errorf("%s: %d bytes read without error", name, r.n)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s still waiting", name)
		}
	}
	if e.cache.Objects() != 0 {
		t.Fatal("a broken body was stored")
	}
}

// TestCoalescedClientsLeaveAtRandom: many clients share one slow fill of
// a 4 MiB object, and a third of them — the leader possibly among them —
// hang up after reading a random amount. The others get the whole body,
// byte for byte; the origin is asked once; the object is stored.
func TestCoalescedClientsLeaveAtRandom(t *testing.T) {
	const size = 4 << 20
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i * 7)
	}
	gate := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for off := 0; off < size; off += 256 << 10 {
			w.Write(body[off : off+256<<10])
			w.(http.Flusher).Flush()
			if off == 0 {
				<-gate // every client has joined by now
			}
		}
	})
	const n = 30
	var wg sync.WaitGroup
	var whole, left atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", e.front.URL+"/big", nil)
			res, err := e.client.Do(req)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			defer res.Body.Close()
			if i%3 == 0 {
				io.CopyN(io.Discard, res.Body, int64(i)*100_000)
				cancel() // hangs up mid-body
				left.Add(1)
				return
			}
			got, err := io.ReadAll(res.Body)
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("client %d: %d bytes, %v", i, len(got), err)
				return
			}
			whole.Add(1)
		}()
	}
	// The header went out before the gate: every follower is past it.
	waitFor(t, "every client on the fill", func() bool { return e.metric("outpost_cache_coalesced_total") == n-1 })
	close(gate)
	wg.Wait()
	if whole.Load() != n-left.Load() {
		t.Fatalf("%d of %d staying clients got the whole body", whole.Load(), n-left.Load())
	}
	if h := e.hits(); h != 1 {
		t.Fatalf("origin asked %d times, want once", h)
	}
	waitFor(t, "stored", func() bool { return e.cache.Objects() == 1 })
}
