package cdn

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Conformance cases in the manner of the HTTP WG cache-tests suite
// (cache-tests.fyi), over real HTTP: each is a sequence of requests against
// one URL, the origin's handler replaceable between steps.

type rfcStep struct {
	advance time.Duration
	origin  http.HandlerFunc // if set, replaces the origin before the step
	hdr     []string
	status  int    // default 200
	xcache  string // "" = don't check
	hits    int64  // origin hits after the step; -1 = don't check
	check   func(t *testing.T, r resp)
}

type rfcCase struct {
	name   string
	origin http.HandlerFunc
	opts   []envOpt
	steps  []rfcStep
}

func runRFCCases(t *testing.T, cases []rfcCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.origin, tc.opts...)
			for i, s := range tc.steps {
				e.clock.Advance(s.advance)
				if s.origin != nil {
					e.origin.set(s.origin)
				}
				r := e.get("/c", s.hdr...)
				want := s.status
				if want == 0 {
					want = 200
				}
				if r.StatusCode != want {
					t.Errorf("step %d: status %d, want %d", i, r.StatusCode, want)
				}
				if s.xcache != "" && r.Header.Get("X-Cache") != s.xcache {
					t.Errorf("step %d: X-Cache %q, want %q (Cache-Status %q)", i, r.Header.Get("X-Cache"), s.xcache, r.Header.Get("Cache-Status"))
				}
				if s.hits >= 0 && e.hits() != s.hits {
					t.Errorf("step %d: origin hits %d, want %d", i, e.hits(), s.hits)
				}
				if s.check != nil {
					s.check(t, r)
				}
			}
		})
	}
}

// dropDate removes Date from the origin's responses with one of the given
// statuses (all when none) on their way to the cache.
func dropDate(statuses ...int) envOpt {
	return withUpstream(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(dateDropper{w, statuses}, r)
		})
	})
}

type dateDropper struct {
	http.ResponseWriter
	statuses []int
}

func (d dateDropper) WriteHeader(code int) {
	drop := len(d.statuses) == 0
	for _, s := range d.statuses {
		drop = drop || s == code
	}
	if drop {
		d.Header().Del("Date")
	}
	d.ResponseWriter.WriteHeader(code)
}

func (d dateDropper) Unwrap() http.ResponseWriter { return d.ResponseWriter }

func cacheStatusIs(want string) func(t *testing.T, r resp) {
	return func(t *testing.T, r resp) {
		t.Helper()
		if got := strings.Join(r.Header.Values("Cache-Status"), ", "); got != want {
			t.Errorf("Cache-Status %q, want %q", got, want)
		}
	}
}

func TestRFC9111Conformance(t *testing.T) {
	// The fake clock starts at the wall clock; these cases move it an hour
	// ahead first, so a Date the front server invents (the wall clock) is
	// told apart from one the cache recorded.
	const ahead = time.Hour
	cases := []rfcCase{
		// RFC 9110 §6.6.1: a cache that stores a response without Date
		// records when it arrived and sends that Date with it.
		{"Date recorded when the origin sends none", static("x", "Cache-Control: max-age=600"), []envOpt{dropDate()}, []rfcStep{
			{advance: ahead, xcache: "MISS", hits: 1},
			{advance: 10 * time.Second, xcache: "HIT", hits: 1, check: func(t *testing.T, r resp) {
				hdrIs("Age", "10")(t, r)
				d, err := http.ParseTime(r.Header.Get("Date"))
				// Fetched at the clock's now+1h, served 10s later: the wall
				// clock (now) or the time of the hit (1h10s on) is wrong.
				arrived := time.Now().Add(ahead)
				if err != nil || d.Before(arrived.Add(-time.Minute)) || d.After(arrived.Add(5*time.Second)) {
					t.Errorf("Date %q is not when the response arrived", r.Header.Get("Date"))
				}
			}},
		}},
		// §4.2.3, §4.3.4: freshness restarts at a 304 even when it has no
		// Date; the stored (old) Date must not make it look 11s old.
		{"304 without Date refreshes", validating("x", `"d"`, "Cache-Control: max-age=10"), []envOpt{dropDate(http.StatusNotModified)}, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 11 * time.Second, xcache: "REVALIDATED", hits: 2},
			{advance: 5 * time.Second, xcache: "HIT", hits: 2, check: hdrIs("Age", "5")},
		}},
		// §4.2.1: with two max-age values, the first is used (or the
		// response is stale) — never a later, longer one.
		{"duplicate max-age uses the first", static("x", "Cache-Control: max-age=0, max-age=3600"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{"duplicate max-age lines use the first", static("x", "Cache-Control: max-age=1", "Cache-Control: max-age=3600"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 2 * time.Second, xcache: "MISS", hits: 2},
		}},
		// RFC 9213 §2.2: a targeted field replaces Cache-Control and
		// Expires; an empty one is ignored.
		{"targeted field ignores Expires", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("CDN-Cache-Control", "must-revalidate")
			w.Header().Set("Expires", time.Now().Add(10*time.Hour).UTC().Format(http.TimeFormat))
			io.WriteString(w, "x")
		}, nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{xcache: "MISS", hits: 2},
		}},
		{"empty targeted field ignored", static("x", "Cache-Control: max-age=60", "CDN-Cache-Control: "), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{xcache: "HIT", hits: 1},
		}},
		// RFC 9213 §2.1: a targeted field is a Structured Field Dictionary
		// (RFC 8941); one that does not parse as one, or whose max-age is
		// not an integer, is ignored (cache-tests cdn-cc-invalid-*).
		{"targeted field that is no Dictionary ignored", static("x", "Cache-Control: no-store", "CDN-Cache-Control: max-age=10000, &&&&&"), nil, []rfcStep{
			{xcache: "MISS", hits: 1}, {xcache: "MISS", hits: 2},
		}},
		{"targeted field with a string max-age ignored", static("x", "Cache-Control: no-store", `CDN-Cache-Control: max-age="10000"`), nil, []rfcStep{
			{xcache: "MISS", hits: 1}, {xcache: "MISS", hits: 2},
		}},
		{"targeted field with a space before = ignored", static("x", "Cache-Control: max-age=1", "CDN-Cache-Control: max-age =100"), nil, []rfcStep{
			{xcache: "MISS", hits: 1}, {advance: 2 * time.Second, xcache: "MISS", hits: 2},
		}},
		{"targeted field with an extension", static("x", "Cache-Control: no-store", `CDN-Cache-Control: foobar, max-age=3600, x-y="a b";p=1, z=(1 2)`), nil, []rfcStep{
			{xcache: "MISS", hits: 1}, {xcache: "HIT", hits: 1},
		}},
		{"targeted max-age past 2^31", static("x", "CDN-Cache-Control: max-age=99999999999"), nil, []rfcStep{
			{xcache: "MISS", hits: 1}, {xcache: "HIT", hits: 1},
		}},
		// RFC 9213 §2.2 with RFC 9111 §3.2: a 304 that does not repeat the
		// targeted field leaves the stored one in force.
		{"targeted field survives a 304 without it", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"t"`)
			if r.Header.Get("If-None-Match") == `"t"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("CDN-Cache-Control", "max-age=10")
			io.WriteString(w, "x")
		}, nil, []rfcStep{
			{xcache: "MISS", hits: 1, check: hdrAbsent("CDN-Cache-Control")},
			{advance: 11 * time.Second, xcache: "REVALIDATED", hits: 2, check: hdrAbsent("CDN-Cache-Control")},
			{advance: 5 * time.Second, xcache: "HIT", hits: 2, check: func(t *testing.T, r resp) {
				hdrAbsent("CDN-Cache-Control")(t, r)
				hdrIs("Cache-Control", "no-store")(t, r)
			}},
		}},
		// §4.3.2: If-Modified-Since against a stored response without
		// Last-Modified is evaluated against its Date.
		{"If-Modified-Since without Last-Modified uses Date", static("hello", "Cache-Control: max-age=600"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{hdr: []string{"If-Modified-Since: " + time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, status: 304, xcache: "HIT", hits: 1},
			{hdr: []string{"If-Modified-Since: " + time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)}, xcache: "HIT", hits: 1, check: bodyIs("hello")},
		}},
		// §4.3.4: a 304 whose strong validator is not the stored one's
		// must not refresh it: the body would be served under another
		// representation's ETag.
		{"304 with another ETag does not refresh", validating("old", `"a"`, "Cache-Control: max-age=10"), nil, []rfcStep{
			{xcache: "MISS", hits: 1, check: bodyIs("old")},
			{advance: 11 * time.Second, origin: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=10")
				w.Header().Set("ETag", `"b"`)
				if r.Header.Get("If-None-Match") != "" {
					w.WriteHeader(http.StatusNotModified) // a broken origin, or another variant's 304
					return
				}
				io.WriteString(w, "new")
			}, hits: -1, check: func(t *testing.T, r resp) {
				if et := r.Header.Get("ETag"); (r.body == "old") != (et == `"a"`) {
					t.Errorf("body %q served with ETag %s", r.body, et)
				}
				if r.Header.Get("X-Cache") == "REVALIDATED" {
					t.Errorf("refreshed by a 304 for another validator")
				}
			}},
		}},
		{"304 with the same weak ETag refreshes", validating("x", `W/"w"`, "Cache-Control: max-age=10"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 11 * time.Second, xcache: "REVALIDATED", hits: 2},
			{xcache: "HIT", hits: 2},
		}},
		// nginx weakens the ETag of a body it compresses, not its 304's.
		{"304 with the strong form of a weak ETag refreshes", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=10")
			if r.Header.Get("If-None-Match") == `W/"g"` {
				w.Header().Set("ETag", `"g"`)
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", `W/"g"`)
			io.WriteString(w, "x")
		}, nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 11 * time.Second, xcache: "REVALIDATED", hits: 2},
		}},
		{"304 with another Last-Modified does not refresh", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=10")
			if r.Header.Get("If-Modified-Since") != "" {
				w.Header().Set("Last-Modified", "Tue, 01 Jan 2030 00:00:00 GMT")
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
			io.WriteString(w, "x")
		}, nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 11 * time.Second, xcache: "MISS", hits: 3, check: cacheStatusIs("Outpost; fwd=uri-miss; detail=validator-mismatch")},
		}},
		// RFC 9211 §2: a cache keeps the Cache-Status members of the
		// caches before it and adds its own last.
		{"Cache-Status keeps the upstream's members", static("x", "Cache-Control: max-age=60", "Cache-Status: OriginCache; hit"), nil, []rfcStep{
			{xcache: "MISS", hits: 1, check: cacheStatusIs("OriginCache; hit, Outpost; fwd=miss; stored")},
			{advance: 10 * time.Second, xcache: "HIT", hits: 1, check: cacheStatusIs("OriginCache; hit, Outpost; hit; ttl=50")},
		}},
		// RFC 9211 §2.2: fwd says why the request went forward: with a
		// stale response at hand, stale; with a fresh one the request
		// would not take, request; fwd-status is what came back.
		{"Cache-Status of a revalidation", validating("x", `"r"`, "Cache-Control: max-age=10"), nil, []rfcStep{
			{xcache: "MISS", hits: 1, check: cacheStatusIs("Outpost; fwd=miss; stored")},
			{advance: 11 * time.Second, xcache: "REVALIDATED", hits: 2, check: cacheStatusIs("Outpost; fwd=stale; fwd-status=304")},
			{hdr: []string{"Cache-Control: no-cache"}, xcache: "REVALIDATED", hits: 3, check: cacheStatusIs("Outpost; fwd=request; fwd-status=304")},
		}},
		{"Cache-Status of a refetch", static("x", "Cache-Control: max-age=10"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 11 * time.Second, xcache: "MISS", hits: 2, check: cacheStatusIs("Outpost; fwd=stale; fwd-status=200; stored")},
			{advance: time.Second, hdr: []string{"Cache-Control: max-age=0"}, origin: static("y", "Cache-Control: no-store"), xcache: "MISS", hits: 3,
				check: cacheStatusIs("Outpost; fwd=request; fwd-status=200; detail=private")},
		}},
		// RFC 9211 §2.1: hit means the request was not forwarded; stale
		// served after a failed forward is fwd=stale with its fwd-status.
		{"Cache-Status of stale-if-error", static("x", "Cache-Control: max-age=1, stale-if-error=60"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 10 * time.Second, origin: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, xcache: "STALE", hits: 2,
				check: cacheStatusIs("Outpost; fwd=stale; fwd-status=503; detail=stale-if-error")},
		}},
	}
	runRFCCases(t, cases)
}

// TestRevalidatedNoLongerStorable: a 304 that makes the stored response
// unstorable (no-store) removes it; the client gets the response with the
// 304's fields — here from the origin again — and that is no store error.
func TestRevalidatedNoLongerStorable(t *testing.T) {
	for _, warm := range []bool{false, true} { // body read from its file, or from memory
		t.Run(map[bool]string{false: "file", true: "memory"}[warm], func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"n"`)
				if r.Header.Get("If-None-Match") == `"n"` {
					w.Header().Set("Cache-Control", "no-store")
					w.WriteHeader(http.StatusNotModified)
					return
				}
				w.Header().Set("Cache-Control", "max-age=10")
				io.WriteString(w, "body")
			})
			e.get("/n")
			if warm {
				e.get("/n") // a hit loads the body into memory
			}
			e.clock.Advance(11 * time.Second)
			e.origin.set(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"n"`)
				w.Header().Set("Cache-Control", "no-store")
				if r.Header.Get("If-None-Match") == `"n"` {
					w.WriteHeader(http.StatusNotModified)
					return
				}
				io.WriteString(w, "body")
			})
			r := e.get("/n")
			if r.StatusCode != 200 || r.body != "body" || r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("got %d %q Cache-Control %q (X-Cache %q)", r.StatusCode, r.body, r.Header.Get("Cache-Control"), r.Header.Get("X-Cache"))
			}
			if n := e.metric("outpost_cache_io_errors_total"); n != 0 {
				t.Errorf("%v store errors counted", n)
			}
			if e.cache.Objects() != 0 {
				t.Errorf("entry kept")
			}
		})
	}
}

// TestFollowerGetsNoPrivateFields: fields a response names in private="…"
// (or no-cache="…") are for the client that caused the fetch; a shared cache
// must not hand them to anyone else (RFC 9111 §5.2.2.7, §5.2.2.4), and
// requests collapsed onto that fetch are someone else.
func TestFollowerGetsNoPrivateFields(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", `max-age=60, private="X-User", no-cache="X-Token"`)
		w.Header().Set("X-User", "alice")
		w.Header().Set("X-Token", "t1")
		w.Header().Set("Content-Length", "6")
		io.WriteString(w, "abc")
		http.NewResponseController(w).Flush()
		<-release
		io.WriteString(w, "def")
	})
	var wg sync.WaitGroup
	var leader, follower resp
	wg.Add(2)
	go func() { defer wg.Done(); leader = e.get("/p") }()
	waitFor(t, "the fill's header", func() bool { return e.hits() == 1 })
	go func() { defer wg.Done(); follower = e.get("/p") }()
	waitFor(t, "the follower to join", func() bool { return e.metric("outpost_cache_coalesced_total") == 1 })
	close(release)
	wg.Wait()
	if leader.Header.Get("X-User") != "alice" || leader.body != "abcdef" {
		t.Fatalf("leader: X-User %q body %q", leader.Header.Get("X-User"), leader.body)
	}
	if follower.body != "abcdef" || !strings.Contains(follower.Header.Get("Cache-Status"), "collapsed") {
		t.Fatalf("follower did not share the fill: %q %q", follower.body, follower.Header.Get("Cache-Status"))
	}
	for _, f := range []string{"X-User", "X-Token"} {
		if v := follower.Header.Get(f); v != "" {
			t.Errorf("follower got %s: %q", f, v)
		}
	}
	// The object is committed after the leader's client had its last
	// byte: wait for the index, do not race it.
	waitFor(t, "stored", func() bool { return e.cache.Objects() == 1 })
	if r := e.get("/p"); r.Header.Get("X-Cache") != "HIT" || r.Header.Get("X-User") != "" {
		t.Errorf("hit: %q X-User %q", r.Header.Get("X-Cache"), r.Header.Get("X-User"))
	}
}

// TestRFC9111Freshness covers age and freshness calculation and request
// directives, cache-tests style.
func TestRFC9111Freshness(t *testing.T) {
	var e *env // the case's env, for origins that move its clock
	slowOrigin := func(delay time.Duration, hdr ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			e.clock.Advance(delay) // Date is already set: the response took this long
			static("x", hdr...)(w, r)
		}
	}
	lmHourAgo := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	cases := []rfcCase{
		// §4.2.3: corrected_age_value = age_value + response_delay.
		{"Age plus response delay", slowOrigin(5*time.Second, "Cache-Control: max-age=60", "Age: 10"), nil, []rfcStep{
			{xcache: "MISS", hits: 1, check: hdrIs("Age", "15")},
			{xcache: "HIT", hits: 1, check: hdrIs("Age", "15")},
			{advance: 44 * time.Second, xcache: "HIT", hits: 1},
			{advance: 2 * time.Second, xcache: "MISS", hits: 2},
		}},
		{"Age larger than max-age is stale", static("x", "Cache-Control: max-age=60", "Age: 3600"), nil, []rfcStep{
			{xcache: "MISS", hits: 1}, {xcache: "MISS", hits: 2},
		}},
		{"huge Age is stale", static("x", "Cache-Control: max-age=60", "Age: 99999999999999999999"), nil, []rfcStep{
			{xcache: "MISS", hits: 1}, {xcache: "MISS", hits: 2},
		}},
		// §5.1: an invalid Age is ignored, not passed on as if it meant
		// something.
		{"garbage Age not forwarded", static("x", "Cache-Control: max-age=60", "Age: abc"), nil, []rfcStep{
			{xcache: "MISS", hits: 1, check: hdrIs("Age", "0")},
		}},
		{"negative Age not forwarded", static("x", "Cache-Control: max-age=60", "Age: -5"), nil, []rfcStep{
			{xcache: "MISS", hits: 1, check: hdrIs("Age", "0")},
		}},
		// §4.2.3 on a 304: its Age counts from the refresh.
		{"Age of a 304 counts", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=10")
			w.Header().Set("ETag", `"a"`)
			if r.Header.Get("If-None-Match") == `"a"` {
				w.Header().Set("Age", "3")
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "x")
		}, nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 20 * time.Second, xcache: "REVALIDATED", hits: 2, check: hdrIs("Age", "3")},
			{advance: 6 * time.Second, xcache: "HIT", hits: 2, check: hdrIs("Age", "9")},
			{advance: 2 * time.Second, xcache: "REVALIDATED", hits: 3},
		}},
		// §4.2.1: Expires is relative to Date, even a Date in the future.
		{"Expires relative to a future Date", func(w http.ResponseWriter, r *http.Request) {
			d := e.clock.Now().Add(time.Hour)
			w.Header().Set("Date", d.UTC().Format(http.TimeFormat))
			w.Header().Set("Expires", d.Add(time.Minute).UTC().Format(http.TimeFormat))
			io.WriteString(w, "x")
		}, nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 59 * time.Second, xcache: "HIT", hits: 1, check: hdrIs("Age", "59")},
			{advance: 2 * time.Second, xcache: "MISS", hits: 2},
		}},
		{"Expires in the past", static("x", "Expires: Thu, 01 Jan 1970 00:00:00 GMT"), nil, []rfcStep{
			{xcache: "MISS", hits: 1}, {xcache: "MISS", hits: 2},
		}},
		{"max-age beats Expires", static("x", "Cache-Control: max-age=60", "Expires: Thu, 01 Jan 1970 00:00:00 GMT"), nil, []rfcStep{
			{xcache: "MISS", hits: 1}, {xcache: "HIT", hits: 1},
		}},
		{"heuristic needs Last-Modified", static("x"), nil, []rfcStep{
			{xcache: "MISS", hits: 1}, {xcache: "MISS", hits: 2},
		}},
		// §5.2.1.7: only-if-cached with nothing fresh is a 504, not a
		// stale copy and not an origin fetch.
		{"only-if-cached on a stale entry", static("x", "Cache-Control: max-age=1"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 5 * time.Second, hdr: []string{"Cache-Control: only-if-cached"}, status: 504, hits: 1},
			{hdr: []string{"Cache-Control: only-if-cached, max-stale"}, xcache: "STALE", hits: 1},
		}},
		{"request max-age=0 on a fresh entry", static("x", "Cache-Control: max-age=60"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: time.Second, hdr: []string{"Cache-Control: max-age=0"}, xcache: "MISS", hits: 2},
			{xcache: "HIT", hits: 2},
		}},
		// §5.2.1.1: max-stale lets a stale response through, but the
		// request's max-age still bounds its age.
		{"request max-age bounds max-stale", static("x", "Cache-Control: max-age=10"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 30 * time.Second, hdr: []string{"Cache-Control: max-age=40, max-stale=100"}, xcache: "STALE", hits: 1},
			{hdr: []string{"Cache-Control: max-age=20, max-stale=100"}, xcache: "MISS", hits: 2},
		}},
		{"must-revalidate ignores max-stale", static("x", "Cache-Control: max-age=1, must-revalidate"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 5 * time.Second, hdr: []string{"Cache-Control: max-stale"}, xcache: "MISS", hits: 2},
		}},
		{"s-maxage ignores max-stale", static("x", "Cache-Control: s-maxage=1"), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{advance: 5 * time.Second, hdr: []string{"Cache-Control: max-stale"}, xcache: "MISS", hits: 2},
		}},
		// RFC 9110 §13.2.1: If-None-Match uses the weak comparison.
		{"weak If-None-Match matches a strong ETag", static("x", "Cache-Control: max-age=60", `ETag: "s"`), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{hdr: []string{`If-None-Match: W/"s"`}, status: 304, xcache: "HIT", hits: 1},
			{hdr: []string{`If-None-Match: "x", "s"`}, status: 304, xcache: "HIT", hits: 1},
		}},
		// RFC 9110 §13.1.5: If-Range uses the strong comparison; a date
		// only matches a strong Last-Modified (Date at least a second
		// after it, §8.8.2.2).
		{"If-Range with a weak ETag is a full response", static("0123456789", "Cache-Control: max-age=60", `ETag: W/"w"`), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{hdr: []string{"Range: bytes=0-1", `If-Range: W/"w"`}, xcache: "HIT", hits: 1, check: bodyIs("0123456789")},
		}},
		{"If-Range with a strong Last-Modified", static("0123456789", "Cache-Control: max-age=60", "Last-Modified: "+lmHourAgo), nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{hdr: []string{"Range: bytes=0-1", "If-Range: " + lmHourAgo}, status: 206, xcache: "HIT", hits: 1, check: bodyIs("01")},
		}},
		{"If-Range with a weak Last-Modified is a full response", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=86400")
			w.Header().Set("Date", lmHourAgo)
			w.Header().Set("Last-Modified", lmHourAgo) // modified in the second it was sent
			io.WriteString(w, "0123456789")
		}, nil, []rfcStep{
			{xcache: "MISS", hits: 1},
			{hdr: []string{"Range: bytes=0-1", "If-Range: " + lmHourAgo}, xcache: "HIT", hits: 1, check: bodyIs("0123456789")},
		}},
	}
	// §5.3: an Expires that is not an HTTP-date is already expired,
	// however time.Parse would read it; all three forms are dates.
	for _, x := range []struct {
		name, expires string
		valid         bool
	}{
		{"one-digit hour", "Thu, 18 Aug 2050 2:33:16 GMT", false},
		{"lower-case weekday", "thu, 18 Aug 2050 02:33:16 GMT", false},
		{"rfc850 form", "Thursday, 18-Aug-50 02:33:16 GMT", true},
		{"asctime form", "Thu Aug 18 02:33:16 2050", true},
	} {
		second := rfcStep{xcache: "MISS", hits: 2}
		if x.valid {
			second = rfcStep{xcache: "HIT", hits: 1}
		}
		cases = append(cases, rfcCase{"Expires " + x.name, static("x", "Expires: "+x.expires), nil,
			[]rfcStep{{xcache: "MISS", hits: 1}, second}})
	}
	for i := range cases {
		opts := cases[i].opts
		cases[i].opts = append(opts, func(en *env) { e = en })
	}
	runRFCCases(t, cases)
}

// TestHeuristicStatuses: without explicit freshness, only the heuristically
// cacheable statuses (RFC 9110 §15.1) are stored on a Last-Modified.
func TestHeuristicStatuses(t *testing.T) {
	lm := time.Now().Add(-240 * time.Hour).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		status int
		stored bool
	}{
		{200, true}, {203, true}, {204, true}, {300, true}, {301, true}, {308, true},
		{404, true}, {405, true}, {410, true}, {414, true}, {501, true},
		{302, false}, {303, false}, {307, false}, {400, false}, {403, false}, {500, false}, {503, false},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Last-Modified", lm)
				if tc.status/100 == 3 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
			})
			e.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			e.get("/h")
			r := e.get("/h")
			if r.StatusCode != tc.status || (r.Header.Get("X-Cache") == "HIT") != tc.stored {
				t.Fatalf("%d: X-Cache %q (Cache-Status %q), stored want %v", r.StatusCode, r.Header.Get("X-Cache"), r.Header.Get("Cache-Status"), tc.stored)
			}
		})
	}
}
