// Package store is the cache's disk store: response bodies as files sharded
// by key hash under DIR/objects, metadata in one bbolt database, and an
// in-memory index so a hit reads neither bbolt nor any store-wide lock.
//
// A body is written to DIR/tmp, renamed into place, and only then committed
// to the index, so a crash (even kill -9) leaves at worst an orphan file that
// the next Open removes; an index record whose file is missing or has the
// wrong size is dropped at Open, so no truncated body is ever served.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-edge/outpost/internal/boltfile"
)

// File is the writable temp file a Writer fills. os.File implements it.
type File interface {
	io.Writer
	io.Closer
	Name() string
}

// Options configures a Store.
type Options struct {
	Dir           string
	MaxSize       int64         // bytes of bodies; evict beyond it
	MaxObjects    int           // entries; evict beyond it
	MaxObjectSize int64         // larger bodies are not admitted
	Policy        string        // PolicyS3FIFO (default) or PolicyLRU
	FlushInterval time.Duration // how often access times go to bbolt; default 30s
	Clock         func() time.Time
	Logger        *slog.Logger
	// CreateTemp creates a temp body file; nil means os.CreateTemp. Tests
	// inject write faults (disk full) through it.
	CreateTemp func(dir, pattern string) (File, error)
	// MemBudget bounds the bytes of small bodies kept in memory (on top of
	// their files) so hot hits need no system call. 0 disables.
	MemBudget int64
	// MemObjectMax: only bodies up to this size are kept in memory.
	MemObjectMax int64
	// MaxVariants bounds the Vary variants stored per key. Default 32.
	MaxVariants int
	// OnEvict is called after entries were evicted for space.
	OnEvict func(entries int, bytes int64)
}

var (
	bucketMeta  = []byte("meta")
	bucketAtime = []byte("atime")
)

// ErrTooLarge is returned by Commit for a body beyond MaxObjectSize.
var ErrTooLarge = errors.New("store: object larger than max_object_size")

// ErrTooManyVariants is returned by Commit when a key already has
// MaxVariants variants: a Vary on a high-cardinality field (User-Agent,
// Cookie) must not let one URL fill the store.
var ErrTooManyVariants = errors.New("store: too many variants for this key")

// ErrStale is returned when the entry to update was replaced or removed meanwhile.
var ErrStale = errors.New("store: entry changed meanwhile")

const nShards = 64

type primary struct {
	vary     []string
	variants map[string]*Entry
}

type shard struct {
	mu sync.RWMutex // guards m and every primary in it
	m  map[string]*primary
}

// Store is the disk store. All methods are safe for concurrent use.
type Store struct {
	opts   Options
	db     *bolt.DB
	objDir string
	tmpDir string
	seed   maphash.Seed
	shards [nShards]shard
	policy Policy
	log    *slog.Logger

	evictMu sync.Mutex // serialises admission and eviction
	objects atomic.Int64
	bytes   atomic.Int64
	memUsed atomic.Int64

	memMu   sync.Mutex // guards memRing, memHand and every Entry.inRing
	memRing []*Entry   // entries holding bodies in memory, swept CLOCK-wise
	memHand int
	gen     atomic.Uint64

	dirty     chan *Entry
	stop      chan struct{}
	flushDone chan struct{}
	closeOnce sync.Once
}

// Open opens or creates the store in opts.Dir and reconciles files and index.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: no directory")
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 30 * time.Second
	}
	if opts.MaxObjects <= 0 {
		opts.MaxObjects = 1 << 20
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = 1 << 30
	}
	if opts.MaxObjectSize <= 0 || opts.MaxObjectSize > opts.MaxSize {
		opts.MaxObjectSize = opts.MaxSize
	}
	if opts.MaxVariants <= 0 {
		opts.MaxVariants = 32
	}
	if opts.CreateTemp == nil {
		opts.CreateTemp = func(dir, pattern string) (File, error) { return os.CreateTemp(dir, pattern) }
	}
	s := &Store{
		opts:      opts,
		objDir:    filepath.Join(opts.Dir, "objects"),
		tmpDir:    filepath.Join(opts.Dir, "tmp"),
		seed:      maphash.MakeSeed(),
		policy:    NewPolicy(opts.Policy, opts.MaxSize, opts.MaxObjects),
		log:       opts.Logger,
		dirty:     make(chan *Entry, 8192),
		stop:      make(chan struct{}),
		flushDone: make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*primary)
	}
	s.gen.Store(uint64(opts.Clock().UnixNano()))
	// A crash leaves only temp files behind: they are never referenced.
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return nil, fmt.Errorf("store: clean tmp: %w", err)
	}
	for _, d := range []string{s.objDir, s.tmpDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	if err := s.openIndex(); err != nil {
		return nil, err
	}
	go s.flusher()
	return s, nil
}

// openIndex opens and reconciles the index. The store is a cache: an index
// bbolt cannot read (truncated by a full disk or a crash of the file
// system, garbage, another program's database) is moved aside to
// index.db.damaged, replacing an earlier one, and the store starts empty;
// reconcile then removes the bodies no record names. An index locked by
// another process is an error: that process owns the directory.
func (s *Store) openIndex() error {
	path := filepath.Join(s.opts.Dir, "index.db")
	err := s.loadIndex(path)
	if !errors.Is(err, boltfile.ErrDamaged) {
		return err
	}
	aside := path + ".damaged"
	s.log.Error("cache index unreadable: starting with an empty cache", "file", path, "moved_to", aside, "error", err)
	if rerr := os.Rename(path, aside); rerr != nil {
		return fmt.Errorf("store: %w; moving it aside failed: %v", err, rerr)
	}
	return s.loadIndex(path)
}

func (s *Store) loadIndex(path string) error {
	db, err := boltfile.Open(path, 5*time.Second)
	if err != nil {
		return fmt.Errorf("store: open index: %w", err)
	}
	s.db = db
	if err := s.reconcile(path); err != nil {
		db.Close()
		s.db = nil
		return err
	}
	return nil
}

// reconcile loads the index, drops records whose body file is missing or of
// the wrong size, removes files no record names, then evicts to the limits.
func (s *Store) reconcile(path string) error {
	var entries []*Entry
	var drop [][]byte
	err := boltfile.Update(s.db, path, func(tx *bolt.Tx) error {
		mb, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			// Another layout: not an index this package wrote.
			return fmt.Errorf("%s: %w: bucket %q: %v", path, boltfile.ErrDamaged, bucketMeta, err)
		}
		ab, err := tx.CreateBucketIfNotExists(bucketAtime)
		if err != nil {
			return fmt.Errorf("%s: %w: bucket %q: %v", path, boltfile.ErrDamaged, bucketAtime, err)
		}
		return mb.ForEach(func(k, v []byte) error {
			var m Meta
			if err := json.Unmarshal(v, &m); err != nil || entryID(m.Key, m.Variant) != string(k) {
				drop = append(drop, slices.Clone(k))
				return nil
			}
			e := s.newEntry(m)
			if !s.filesOK(e) {
				drop = append(drop, slices.Clone(k))
				return nil
			}
			if a := ab.Get(k); len(a) == 8 {
				e.accessed.Store(int64(binary.BigEndian.Uint64(a)))
			} else {
				e.accessed.Store(m.ResponseTime.UnixNano())
			}
			entries = append(entries, e)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store: load index: %w", err)
	}
	if len(drop) > 0 {
		s.log.Warn("dropping index records without a complete body", "count", len(drop))
		if err := s.deleteRecords(drop); err != nil {
			return err
		}
	}
	known := make(map[string]bool, len(entries)*2)
	sort.Slice(entries, func(i, j int) bool { return entries[i].accessed.Load() < entries[j].accessed.Load() })
	for _, e := range entries {
		known[e.File] = true
		for _, enc := range e.Encodings {
			known[enc.File] = true
		}
		sh := s.shard(e.Key)
		p := sh.m[e.Key]
		if p == nil || !slices.Equal(p.vary, e.Vary) {
			// The newest record's Vary wins; older variants are stale.
			if p != nil {
				for _, old := range p.variants {
					s.unaccount(old)
					s.policy.Remove(old)
					drop = append(drop, []byte(old.id))
				}
			}
			p = &primary{vary: e.Vary, variants: make(map[string]*Entry)}
			sh.m[e.Key] = p
		}
		p.variants[e.Variant] = e
		s.account(e)
		s.policy.Restore(e)
	}
	orphans := 0
	_ = filepath.WalkDir(s.objDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(s.objDir, path)
		if !known[filepath.ToSlash(rel)] {
			os.Remove(path)
			orphans++
		}
		return nil
	})
	if orphans > 0 {
		s.log.Info("removed orphan body files", "count", orphans)
	}
	s.evict()
	return nil
}

func (s *Store) filesOK(e *Entry) bool {
	if !validRel(e.File) {
		return false
	}
	if !bodyOK(e.path, e.Size) {
		return false
	}
	for _, enc := range e.Encodings {
		if !validRel(enc.File) || !bodyOK(filepath.Join(s.objDir, enc.File), enc.Size) {
			return false
		}
	}
	return true
}

// bodyOK reports whether path is a regular file of size bytes. A symlink
// is never a body: this package writes none, and following one could serve
// a file from outside the cache directory.
func bodyOK(path string, size int64) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

// validRel accepts only the names this package generates ("ab/cd/hex.x.y"),
// so a tampered index can never point outside the objects directory.
func validRel(rel string) bool {
	if len(rel) < 7 || rel[2] != '/' || rel[5] != '/' {
		return false
	}
	for i := 0; i < len(rel); i++ {
		c := rel[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '.' || c == '/' && (i == 2 || i == 5)) {
			return false
		}
	}
	return !strings.Contains(rel, "..")
}

func (s *Store) newEntry(m Meta) *Entry {
	return &Entry{Meta: m, id: entryID(m.Key, m.Variant), path: filepath.Join(s.objDir, m.File), dir: s.objDir}
}

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%nShards]
}

func (s *Store) account(e *Entry) {
	s.objects.Add(1)
	s.bytes.Add(e.TotalSize())
}

func (s *Store) unaccount(e *Entry) {
	s.objects.Add(-1)
	s.bytes.Add(-e.TotalSize())
	e.dead.Store(true)
	s.memUsed.Add(-e.memBytes.Swap(0))
	for i := range e.mem {
		e.mem[i].Store(nil)
	}
}

// Objects returns the number of stored entries.
func (s *Store) Objects() int64 { return s.objects.Load() }

// Bytes returns the stored body bytes.
func (s *Store) Bytes() int64 { return s.bytes.Load() }

// Lookup returns the entry for key whose variant matches the request header
// h, or nil. It records the access for the eviction policy.
func (s *Store) Lookup(key string, h http.Header) *Entry {
	sh := s.shard(key)
	sh.mu.RLock()
	p := sh.m[key]
	var e *Entry
	if p != nil {
		if len(p.vary) == 0 {
			e = p.variants[""]
		} else {
			e = p.variants[VariantKey(p.vary, h)]
		}
	}
	sh.mu.RUnlock()
	if e != nil {
		s.touch(e)
	}
	return e
}

// Vary returns the Vary header names known for key (nil if none or unknown).
func (s *Store) Vary(key string) []string {
	sh := s.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if p := sh.m[key]; p != nil {
		return p.vary
	}
	return nil
}

func (s *Store) touch(e *Entry) {
	s.policy.Hit(e)
	e.accessed.Store(s.opts.Clock().UnixNano())
	if e.dirty.CompareAndSwap(false, true) {
		select {
		case s.dirty <- e:
		default:
			// The flusher is behind; this access time is dropped, which
			// only makes the order after a restart a little less exact.
			e.dirty.Store(false)
		}
	}
}

// Update replaces base's metadata with fn's changes (bodies stay). It fails
// with ErrStale when base is no longer the stored entry.
func (s *Store) Update(base *Entry, fn func(m *Meta)) (*Entry, error) {
	m := base.Meta.Clone()
	fn(&m)
	m.Key, m.Variant, m.Size, m.File, m.Encodings = base.Key, base.Variant, base.Size, base.File, base.Encodings
	e := s.newEntry(m)
	e.accessed.Store(base.accessed.Load())
	if !s.isCurrent(base) {
		return nil, ErrStale
	}
	ok, err := s.publish(e, base)
	if !ok {
		return nil, ErrStale
	}
	if err != nil {
		// Memory has the update; the index keeps the previous metadata
		// of the same body, which a restart may reload.
		return nil, err
	}
	return e, nil
}

// variantsFull reports whether storing m would add a variant beyond the limit.
func (s *Store) variantsFull(m Meta) bool {
	sh := s.shard(m.Key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	p := sh.m[m.Key]
	if p == nil || !slices.Equal(p.vary, m.Vary) {
		return false
	}
	_, have := p.variants[m.Variant]
	return !have && len(p.variants) >= s.opts.MaxVariants
}

func (s *Store) isCurrent(e *Entry) bool {
	sh := s.shard(e.Key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	p := sh.m[e.Key]
	return p != nil && p.variants[e.Variant] == e
}

// current returns the published entry for key and variant, or nil.
func (s *Store) current(key, variant string) *Entry {
	sh := s.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if p := sh.m[key]; p != nil {
		return p.variants[variant]
	}
	return nil
}

// syncRecords makes the index records of entries' ids say what memory holds
// now: the current entry's metadata, or no record. Index writes issued after
// memory changes can commit out of order (a purge's delete after a newer
// body's put of the same id, a failed update's restore after the entry was
// removed), which lost live entries' records or kept dead ones. Memory is
// read inside the write transaction, and those are serialised, so the last
// transaction touching an id writes the state after the last change to it.
// Every change to the in-memory index must be followed by a syncRecords of
// the ids it touched.
func (s *Store) syncRecords(entries []*Entry) error {
	if len(entries) == 0 {
		return nil
	}
	return s.db.Batch(func(tx *bolt.Tx) error {
		mb, ab := tx.Bucket(bucketMeta), tx.Bucket(bucketAtime)
		for _, e := range entries {
			cur := s.current(e.Key, e.Variant)
			if cur == nil {
				if err := mb.Delete([]byte(e.id)); err != nil {
					return err
				}
				if err := ab.Delete([]byte(e.id)); err != nil {
					return err
				}
				continue
			}
			v, err := json.Marshal(&cur.Meta)
			if err != nil {
				return err
			}
			if err := mb.Put([]byte(cur.id), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// publish swaps e into the index. With expect non-nil, it only replaces
// expect (an update of the same entry, whose bodies it keeps); otherwise it
// replaces whatever is there and deletes the replaced entry's files. It
// reports whether e was published, and the error of the index write.
func (s *Store) publish(e, expect *Entry) (bool, error) {
	s.evictMu.Lock()
	sh := s.shard(e.Key)
	sh.mu.Lock()
	p := sh.m[e.Key]
	var gone []*Entry
	if expect != nil && (p == nil || p.variants[e.Variant] != expect) {
		// Raced a removal or replacement: nothing changed, and the
		// index was not written yet.
		sh.mu.Unlock()
		s.evictMu.Unlock()
		return false, nil
	}
	if p == nil || !slices.Equal(p.vary, e.Vary) {
		if p != nil {
			for _, old := range p.variants {
				gone = append(gone, old)
			}
		}
		p = &primary{vary: slices.Clip(e.Vary), variants: make(map[string]*Entry, 1)}
		sh.m[e.Key] = p
	} else if old := p.variants[e.Variant]; old != nil {
		gone = append(gone, old)
	}
	p.variants[e.Variant] = e
	sh.mu.Unlock()
	for _, old := range gone {
		if !old.removed {
			old.removed = true
			s.unaccount(old)
			s.policy.Remove(old)
		}
	}
	s.account(e)
	if expect != nil {
		e.freq.Store(expect.freq.Load())
		s.policy.Restore(e)
	} else {
		s.policy.Admit(e)
	}
	victims := s.evictLocked()
	s.evictMu.Unlock()

	// The index learns of the new entry (and forgets the replaced ones)
	// before the replaced bodies go, so a crash in between leaves records
	// whose files exist.
	touched := append([]*Entry{e}, gone...)
	touched = append(touched, s.dropVictims(victims)...)
	err := s.syncRecords(touched)
	for _, old := range gone {
		if expect == nil || old != expect {
			s.removeFiles(old, e)
		}
	}
	return true, err
}

// removeFiles deletes old's body files that keep (if any) does not share.
func (s *Store) removeFiles(old, keep *Entry) {
	shared := func(rel string) bool {
		if keep == nil {
			return false
		}
		if keep.File == rel {
			return true
		}
		for _, enc := range keep.Encodings {
			if enc.File == rel {
				return true
			}
		}
		return false
	}
	if !shared(old.File) {
		os.Remove(old.path)
	}
	for _, enc := range old.Encodings {
		if !shared(enc.File) {
			os.Remove(filepath.Join(s.objDir, enc.File))
		}
	}
}

func (s *Store) evict() {
	s.evictMu.Lock()
	victims := s.evictLocked()
	s.evictMu.Unlock()
	if err := s.syncRecords(s.dropVictims(victims)); err != nil {
		s.log.Error("index delete failed", "err", err)
	}
}

// evictLocked picks victims until the limits hold; evictMu is held.
func (s *Store) evictLocked() []*Entry {
	var victims []*Entry
	for s.bytes.Load() > s.opts.MaxSize || s.objects.Load() > int64(s.opts.MaxObjects) {
		v := s.policy.Victim()
		if v == nil {
			break
		}
		v.removed = true
		s.unaccount(v)
		victims = append(victims, v)
	}
	return victims
}

// dropVictims removes evicted entries from memory and disk and returns
// them, for syncRecords.
func (s *Store) dropVictims(victims []*Entry) []*Entry {
	if len(victims) == 0 {
		return nil
	}
	var n int64
	for _, v := range victims {
		sh := s.shard(v.Key)
		sh.mu.Lock()
		if p := sh.m[v.Key]; p != nil && p.variants[v.Variant] == v {
			delete(p.variants, v.Variant)
			if len(p.variants) == 0 {
				delete(sh.m, v.Key)
			}
		}
		sh.mu.Unlock()
		s.removeFiles(v, nil)
		n += v.TotalSize()
	}
	if s.opts.OnEvict != nil {
		s.opts.OnEvict(len(victims), n)
	}
	return victims
}

func (s *Store) deleteRecords(ids [][]byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		mb, ab := tx.Bucket(bucketMeta), tx.Bucket(bucketAtime)
		for _, id := range ids {
			if err := mb.Delete(id); err != nil {
				return err
			}
			if err := ab.Delete(id); err != nil {
				return err
			}
		}
		return nil
	})
}

// Remove deletes entries (all variants of their keys when whole is true)
// and returns how many entries went.
func (s *Store) Remove(entries []*Entry) int {
	s.evictMu.Lock()
	var gone []*Entry
	for _, e := range entries {
		sh := s.shard(e.Key)
		sh.mu.Lock()
		if p := sh.m[e.Key]; p != nil && p.variants[e.Variant] == e {
			delete(p.variants, e.Variant)
			if len(p.variants) == 0 {
				delete(sh.m, e.Key)
			}
			if !e.removed {
				e.removed = true
				s.unaccount(e)
				s.policy.Remove(e)
				gone = append(gone, e)
			}
		}
		sh.mu.Unlock()
	}
	s.evictMu.Unlock()
	for _, e := range gone {
		s.removeFiles(e, nil)
	}
	if err := s.syncRecords(gone); err != nil {
		s.log.Error("index delete failed", "err", err)
	}
	return len(gone)
}

// Variants returns every stored variant of key.
func (s *Store) Variants(key string) []*Entry {
	sh := s.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	p := sh.m[key]
	if p == nil {
		return nil
	}
	out := make([]*Entry, 0, len(p.variants))
	for _, e := range p.variants {
		out = append(out, e)
	}
	return out
}

// Select returns every entry for which match returns true. match runs with
// a shard read lock held and must be quick.
func (s *Store) Select(match func(e *Entry) bool) []*Entry {
	var out []*Entry
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, p := range sh.m {
			for _, e := range p.variants {
				if match(e) {
					out = append(out, e)
				}
			}
		}
		sh.mu.RUnlock()
	}
	return out
}

func (s *Store) flusher() {
	defer close(s.flushDone)
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.Flush()
		case <-s.stop:
			s.Flush()
			return
		}
	}
}

// Flush writes the batched access times to the index in one transaction.
func (s *Store) Flush() {
	var batch []*Entry
	for {
		select {
		case e := <-s.dirty:
			batch = append(batch, e)
			continue
		default:
		}
		break
	}
	if len(batch) == 0 {
		return
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		mb, ab := tx.Bucket(bucketMeta), tx.Bucket(bucketAtime)
		var buf [8]byte
		for _, e := range batch {
			e.dirty.Store(false)
			if mb.Get([]byte(e.id)) == nil {
				continue // gone meanwhile
			}
			binary.BigEndian.PutUint64(buf[:], uint64(e.accessed.Load()))
			if err := ab.Put([]byte(e.id), bytes.Clone(buf[:])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("access time flush failed", "err", err)
	}
}

// Close flushes access times and closes the index. Bodies being read stay
// readable through their open files.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.flushDone
		err = s.db.Close()
	})
	return err
}
