package store

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openT(t *testing.T, dir string, mod func(*Options)) *Store {
	t.Helper()
	o := Options{Dir: dir, MaxSize: 1 << 20, MaxObjects: 1000, FlushInterval: time.Hour}
	if mod != nil {
		mod(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkInvariants(t, s)
		s.Close()
	})
	return s
}

// checkInvariants verifies memory accounting matches the index.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	var n, b int64
	for _, e := range s.Select(func(*Entry) bool { return true }) {
		n++
		b += e.TotalSize()
		if _, err := os.Stat(e.Path()); err != nil {
			t.Errorf("entry %q has no body file", e.Key)
		}
	}
	if n != s.Objects() || b != s.Bytes() {
		t.Errorf("accounting: %d/%d objects, %d/%d bytes", n, s.Objects(), b, s.Bytes())
	}
	checkIndex(t, s)
}

// checkIndex verifies the index holds exactly the entries in memory, each
// naming the same body files: what a restart would reload.
func checkIndex(t *testing.T, s *Store) {
	t.Helper()
	live := map[string]*Entry{}
	for _, e := range s.Select(func(*Entry) bool { return true }) {
		live[e.id] = e
	}
	seen := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
			var m Meta
			if err := json.Unmarshal(v, &m); err != nil {
				t.Errorf("index record %q: %v", k, err)
				return nil
			}
			e := live[string(k)]
			switch {
			case e == nil:
				t.Errorf("index record %q (file %s) has no live entry", k, m.File)
			case e.File != m.File || len(e.Encodings) != len(m.Encodings) || e.Invalidated != m.Invalidated:
				t.Errorf("index record %q: file %s/%d encodings, live entry %s/%d", k, m.File, len(m.Encodings), e.File, len(e.Encodings))
			default:
				seen++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(live) {
		t.Errorf("index has %d of %d live entries", seen, len(live))
	}
}

func put(t *testing.T, s *Store, key, body string) *Entry {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(body))
	e, err := w.Commit(Meta{Key: key, Status: 200, Header: http.Header{"X": {"1"}}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPutLookupReplace(t *testing.T) {
	s := openT(t, t.TempDir(), nil)
	e1 := put(t, s, "http://a/x", "one")
	if got := s.Lookup("http://a/x", nil); got != e1 {
		t.Fatal("lookup")
	}
	e2 := put(t, s, "http://a/x", "three")
	if got := s.Lookup("http://a/x", nil); got != e2 || s.Objects() != 1 || s.Bytes() != 5 {
		t.Fatalf("replace: objects %d bytes %d", s.Objects(), s.Bytes())
	}
	if _, err := os.Stat(e1.Path()); !os.IsNotExist(err) {
		t.Fatal("old body kept")
	}
	if _, err := s.Update(e1, func(m *Meta) {}); err != ErrStale {
		t.Fatalf("update of replaced entry: %v", err)
	}
	if n := s.Remove([]*Entry{e2}); n != 1 || s.Objects() != 0 {
		t.Fatal("remove")
	}
}

func TestReconcileDropsBrokenRecords(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MaxSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	good := put(t, s, "http://a/good", "good")
	trunc := put(t, s, "http://a/trunc", "truncated body")
	gone := put(t, s, "http://a/gone", "gone")
	s.Close()
	os.Truncate(trunc.Path(), 3)
	os.Remove(gone.Path())
	orphan := filepath.Join(dir, "objects", "ab", "cd", "orphan.id.1")
	os.MkdirAll(filepath.Dir(orphan), 0o750)
	os.WriteFile(orphan, []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "tmp", "body-123"), []byte("partial"), 0o600)
	// A tampered record pointing outside the objects directory.
	db, _ := bolt.Open(filepath.Join(dir, "index.db"), 0o600, nil)
	db.Update(func(tx *bolt.Tx) error {
		m := Meta{Key: "http://a/evil", Status: 200, File: "../../../etc/passwd", Size: 10}
		v, _ := json.Marshal(m)
		return tx.Bucket(bucketMeta).Put([]byte(entryID(m.Key, "")), v)
	})
	db.Close()

	s2 := openT(t, dir, nil)
	if s2.Lookup("http://a/good", nil) == nil || s2.Objects() != 1 {
		t.Fatalf("objects %d", s2.Objects())
	}
	for _, k := range []string{"http://a/trunc", "http://a/gone", "http://a/evil"} {
		if s2.Lookup(k, nil) != nil {
			t.Errorf("%s served after reconcile", k)
		}
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Error("orphan kept")
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Error("temp kept")
	}
	_ = good
}

func TestAccessTimesBatched(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1000, 0)
	s, _ := Open(Options{Dir: dir, MaxSize: 1 << 20, FlushInterval: time.Hour, Clock: func() time.Time { return now }})
	put(t, s, "http://a/1", "1")
	put(t, s, "http://a/2", "2")
	now = now.Add(time.Hour)
	// Hits touch neither bbolt's write path nor its read path: the index
	// sees no transaction at all until the batch is flushed.
	lastWrite := func() int { // txid of the last committed write transaction
		id := -1
		s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	w0 := lastWrite()
	r0 := s.db.Stats().TxN
	for i := 0; i < 100; i++ {
		if s.Lookup("http://a/1", nil) == nil { // 1 is now the most recent
			t.Fatal("lookup")
		}
	}
	if r := s.db.Stats().TxN - r0; r != 0 {
		t.Fatalf("100 hits started %d read transactions", r)
	}
	if w := lastWrite() - w0; w != 0 {
		t.Fatalf("100 hits committed %d write transactions", w)
	}
	s.Flush()
	if w := lastWrite() - w0; w != 1 {
		t.Fatalf("flush committed %d write transactions, want 1", w)
	}
	s.Close() // flushes (nothing left)
	s2 := openT(t, dir, func(o *Options) { o.Policy = PolicyLRU; o.MaxObjects = 1 })
	// LRU restored by access time: 2 (older) was evicted at Open.
	if s2.Lookup("http://a/1", nil) == nil || s2.Lookup("http://a/2", nil) != nil {
		t.Fatal("access order not restored")
	}
}

func TestVariants(t *testing.T) {
	s := openT(t, t.TempDir(), nil)
	mk := func(lang string) {
		w, _ := s.Create()
		w.Write([]byte(lang))
		h := http.Header{"Accept-Language": {lang}}
		vary := []string{"Accept-Language"}
		if _, err := w.Commit(Meta{Key: "k", Vary: vary, Variant: VariantKey(vary, h), Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	mk("en")
	mk("fr")
	if len(s.Variants("k")) != 2 {
		t.Fatal("variants")
	}
	if e := s.Lookup("k", http.Header{"Accept-Language": {"FR"}}); e == nil || e.Size != 2 {
		t.Fatal("variant lookup")
	}
	// A response with a different Vary drops the old variants.
	w, _ := s.Create()
	w.Write([]byte("x"))
	w.Commit(Meta{Key: "k", Status: 200})
	if len(s.Variants("k")) != 1 || s.Objects() != 1 {
		t.Fatalf("vary change: %d", s.Objects())
	}
}

// zipfTrace simulates a request stream over n objects with Zipf popularity
// (s=1.01, like web object popularity) and returns the hit ratio of a policy
// holding capacity objects.
func zipfHitRatio(p Policy, n, capacity, requests int, seed uint64) float64 {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	z := rand.NewZipf(r, 1.01, 1, uint64(n-1))
	entries := make(map[uint64]*Entry)
	back := make(map[*Entry]uint64)
	hits := 0
	for i := 0; i < requests; i++ {
		k := z.Uint64()
		if e, ok := entries[k]; ok {
			p.Hit(e)
			hits++
			continue
		}
		e := &Entry{Meta: Meta{Size: 1}, id: strconv.FormatUint(k, 36)}
		p.Admit(e)
		entries[k] = e
		back[e] = k
		for len(entries) > capacity {
			v := p.Victim()
			delete(entries, back[v])
			delete(back, v)
		}
	}
	return float64(hits) / float64(requests)
}

// TestPolicyZipfHitRatio measures the eviction policies on a Zipf workload:
// S3-FIFO (the default) must do at least as well as LRU.
func TestPolicyZipfHitRatio(t *testing.T) {
	const n, requests = 100000, 200000
	for _, capacity := range []int{1000, 10000} {
		s3 := zipfHitRatio(newS3FIFO(int64(capacity), capacity), n, capacity, requests, 1)
		lr := zipfHitRatio(&lru{}, n, capacity, requests, 1)
		t.Logf("zipf(1.01) n=%d cache=%d: s3fifo %.4f, lru %.4f", n, capacity, s3, lr)
		if s3 < lr {
			t.Errorf("s3fifo %.4f < lru %.4f", s3, lr)
		}
	}
}

func TestMemoryBodies(t *testing.T) {
	s := openT(t, t.TempDir(), func(o *Options) { o.MemBudget = 10; o.MemObjectMax = 6 })
	a := put(t, s, "http://a/a", "aaaaa")
	b := put(t, s, "http://a/b", "bbbbb")
	big := put(t, s, "http://a/big", "0123456789")
	if string(s.Body(a, "")) != "aaaaa" || string(s.Body(b, "")) != "bbbbb" || s.MemBytes() != 10 {
		t.Fatalf("mem %d", s.MemBytes())
	}
	if s.Body(big, "") != nil {
		t.Fatal("over object max kept in memory")
	}
	s.Body(b, "") // b is served from memory again: it survives the sweep
	c := put(t, s, "http://a/c", "ccccc")
	if string(s.Body(c, "")) != "ccccc" || s.MemBytes() != 10 {
		t.Fatalf("c not loaded: mem %d", s.MemBytes())
	}
	if a.mem[0].Load() != nil || b.mem[0].Load() == nil {
		t.Fatal("CLOCK dropped the wrong body")
	}
	if string(s.Body(a, "")) != "aaaaa" { // from the file again (and reloaded)
		t.Fatal("a unreadable")
	}
	s.Remove([]*Entry{b})
	put(t, s, "http://a/c", "replaced")
	put(t, s, "http://a/a", "replaced")
	if s.MemBytes() != 0 {
		t.Fatalf("after remove and replace %d", s.MemBytes())
	}
}

// TestConcurrentOps hammers the store from several goroutines; the race
// detector and the cleanup invariants (accounting matches, every entry has
// its file) do the checking, plus no orphan files at the end.
func TestConcurrentOps(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, func(o *Options) {
		o.MaxSize = 64 << 10
		o.MaxObjects = 40
		o.MemBudget = 16 << 10
		o.MemObjectMax = 4 << 10
	})
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func(g int) {
			defer func() { done <- struct{}{} }()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for i := 0; i < 300; i++ {
				key := "http://a/" + strconv.Itoa(r.IntN(60))
				switch r.IntN(6) {
				case 0, 1:
					w, err := s.Create()
					if err != nil {
						t.Error(err)
						return
					}
					w.Write(make([]byte, r.IntN(4000)))
					w.Commit(Meta{Key: key, Status: 200})
				case 2:
					if e := s.Lookup(key, nil); e != nil {
						s.Body(e, "")
						if _, err := os.Stat(e.Path()); err != nil && !e.dead.Load() {
							// A live entry's file may only vanish after removal.
							if s.Lookup(key, nil) == e {
								t.Errorf("live entry without file")
							}
						}
					}
				case 3:
					if e := s.Lookup(key, nil); e != nil {
						w, _ := s.Create()
						w.Write([]byte("compressed"))
						if ne, err := w.CommitEncoding(e, "gzip"); err == nil {
							s.Body(ne, "gzip")
						}
					}
				case 4:
					if e := s.Lookup(key, nil); e != nil {
						s.Update(e, func(m *Meta) { m.Invalidated = true })
					}
				case 5:
					s.Remove(s.Variants(key))
				}
			}
		}(g)
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	if s.Bytes() > 64<<10 || s.Objects() > 40 {
		t.Fatalf("limits: %d bytes %d objects", s.Bytes(), s.Objects())
	}
	// Every file on disk belongs to an entry.
	want := map[string]bool{}
	for _, e := range s.Select(func(*Entry) bool { return true }) {
		want[e.File] = true
		for _, enc := range e.Encodings {
			want[enc.File] = true
		}
	}
	filepath.WalkDir(filepath.Join(dir, "objects"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(filepath.Join(dir, "objects"), p)
			if !want[filepath.ToSlash(rel)] {
				t.Errorf("orphan file %s", rel)
			}
		}
		return nil
	})
	var mem int64
	for _, e := range s.Select(func(*Entry) bool { return true }) {
		mem += e.memBytes.Load()
	}
	if mem != s.MemBytes() {
		t.Errorf("memory accounting %d != %d", mem, s.MemBytes())
	}
}

func TestVariantLimit(t *testing.T) {
	s := openT(t, t.TempDir(), func(o *Options) { o.MaxVariants = 3 })
	vary := []string{"User-Agent"}
	for i := 0; i < 5; i++ {
		w, _ := s.Create()
		w.Write([]byte("x"))
		h := http.Header{"User-Agent": {strconv.Itoa(i)}}
		_, err := w.Commit(Meta{Key: "k", Vary: vary, Variant: VariantKey(vary, h), Status: 200})
		if (i < 3) != (err == nil) {
			t.Fatalf("variant %d: %v", i, err)
		}
	}
	// Replacing an existing variant is still allowed.
	w, _ := s.Create()
	h := http.Header{"User-Agent": {"1"}}
	if _, err := w.Commit(Meta{Key: "k", Vary: vary, Variant: VariantKey(vary, h), Status: 200}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.opts.Dir, "tmp")); len(ents) != 0 {
		t.Fatal("aborted temp left behind")
	}
}

// TestRemoveRacingRecommitKeepsIndex: a purge of a key racing a new body for
// it must leave the index naming exactly what is live. The purge's record
// delete used to land after the new body's record put (same id), so the
// live entry had no record and was lost on restart.
func TestRemoveRacingRecommitKeepsIndex(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		key := "http://a/" + strconv.Itoa(i)
		put(t, s, key, "old")
		w, err := s.Create()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("new"))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); w.Commit(Meta{Key: key, Status: 200}) }()
		go func() {
			defer wg.Done()
			// Spread the purge over the commit's index write (batched
			// for up to 10ms), so the runs cover every order.
			time.Sleep(time.Duration(i%12) * time.Millisecond)
			s.Remove(s.Variants(key))
		}()
		wg.Wait()
	}
	checkIndex(t, s)
	live := s.Objects()
	s.Close()
	s2 := openT(t, dir, nil)
	if s2.Objects() != live {
		t.Fatalf("after restart %d entries, %d were live", s2.Objects(), live)
	}
}
