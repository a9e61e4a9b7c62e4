package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-edge/outpost/internal/boltfile"
)

// KeyPrefix starts every API key the gateway generates, so keys are
// recognisable in a leak scan and never mistaken for JWTs.
const KeyPrefix = "opk_"

var keysBucket = []byte("api_keys")

// KeyRecord is a stored API key: everything but the key itself.
type KeyRecord struct {
	ID        string     `json:"id"`
	Hash      string     `json:"hash"` // hex SHA-256 of the key
	Owner     string     `json:"owner"`
	Tier      string     `json:"tier,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	Roles     []string   `json:"roles,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// KeySpec describes a key to create.
type KeySpec struct {
	ID        string     `json:"id,omitempty"` // optional; generated when empty
	Owner     string     `json:"owner"`
	Tier      string     `json:"tier,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	Roles     []string   `json:"roles,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// SpecError is a KeySpec problem: the caller's fault, safe to show.
type SpecError string

func (e SpecError) Error() string { return string(e) }

// Key store errors.
var (
	ErrKeyExists   = errors.New("gateway: key id already exists")
	ErrKeyNotFound = errors.New("gateway: no such key")
)

// KeyStore holds API keys created through the admin API, persisted in
// bbolt and mirrored in memory so a lookup never touches disk and a
// revocation is visible to the very next request. It is long-lived: open it
// once per process and pass it in StateOptions.
type KeyStore struct {
	db   *bolt.DB
	rand io.Reader
	now  func() time.Time

	// writeMu serialises Create and Revoke, so disk and memory change in
	// the same order; it is held across the bbolt fsync. mu guards the maps
	// and is held only to swap entries, so lookups never wait for disk.
	writeMu sync.Mutex
	mu      sync.RWMutex
	byHash  map[[32]byte]*KeyRecord
	byID    map[string]*KeyRecord

	// reserved reports ids Create must refuse: those of keys in config.
	reserved atomic.Pointer[func(id string) bool]
}

// SetReserved makes Create refuse the ids reserved reports, as taken: a
// stored key with a config key's id would share its rate-limit bucket and
// its X-Outpost-Key-Id, so origins and limits could not tell them apart.
// The node sets it to its config's api_keys ids (read at each call, so
// reloads count).
func (s *KeyStore) SetReserved(reserved func(id string) bool) {
	s.reserved.Store(&reserved)
}

// OpenKeyStore opens (creating if needed) the key database at path. A file
// that cannot be read is an error naming it, never an empty store: the
// keys in it are data, and starting without them would make every issued
// key fail and let the next Create write over the file.
func OpenKeyStore(path string) (*KeyStore, error) {
	db, err := boltfile.Open(path, 5*time.Second)
	if err != nil {
		return nil, keyStoreError(path, err)
	}
	s := &KeyStore{db: db, rand: rand.Reader, now: time.Now, byHash: map[[32]byte]*KeyRecord{}, byID: map[string]*KeyRecord{}}
	err = boltfile.Update(db, path, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(keysBucket)
		if err != nil {
			return fmt.Errorf("bucket %q: %w", keysBucket, err)
		}
		return b.ForEach(func(k, v []byte) error {
			var rec KeyRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
			return s.index(&rec)
		})
	})
	if err != nil {
		db.Close()
		return nil, keyStoreError(path, err)
	}
	return s, nil
}

func keyStoreError(path string, err error) error {
	if errors.Is(err, boltfile.ErrLocked) {
		return fmt.Errorf("gateway: key store: %w", err)
	}
	return fmt.Errorf("gateway: key store %s cannot be read: %w; restore it from a backup "+
		"(moving it aside starts with no API keys: every key made with /v1/keys stops working)", path, err)
}

// SetClock replaces the clock and randomness source (tests).
func (s *KeyStore) SetClock(now func() time.Time, r io.Reader) {
	s.now, s.rand = now, r
}

// Close closes the database.
func (s *KeyStore) Close() error { return s.db.Close() }

func (s *KeyStore) index(rec *KeyRecord) error {
	h, err := hex.DecodeString(rec.Hash)
	if err != nil || len(h) != 32 {
		return fmt.Errorf("key %q: bad hash", rec.ID)
	}
	s.byHash[[32]byte(h)] = rec
	s.byID[rec.ID] = rec
	return nil
}

// lookup finds a key by the SHA-256 of its plaintext. The returned record
// must not be modified.
func (s *KeyStore) lookup(sum [32]byte) *KeyRecord {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	rec := s.byHash[sum]
	s.mu.RUnlock()
	return rec
}

// Create generates a key for spec, stores its hash and returns the
// plaintext key (shown once, never stored) with the record.
func (s *KeyStore) Create(spec KeySpec) (string, KeyRecord, error) {
	if spec.Owner == "" || !cleanWord(spec.Owner) {
		return "", KeyRecord{}, SpecError("owner must be a non-empty word")
	}
	if spec.Tier != "" && !cleanWord(spec.Tier) {
		return "", KeyRecord{}, SpecError("tier must be a word")
	}
	for _, w := range append(slices.Clone(spec.Scopes), spec.Roles...) {
		if !cleanWord(w) {
			return "", KeyRecord{}, SpecError(fmt.Sprintf("scope or role %q must be a non-empty word", w))
		}
	}
	var secret [32]byte
	if _, err := io.ReadFull(s.rand, secret[:]); err != nil {
		return "", KeyRecord{}, fmt.Errorf("gateway: key generation: %w", err)
	}
	id := spec.ID
	if id == "" {
		var b [8]byte
		if _, err := io.ReadFull(s.rand, b[:]); err != nil {
			return "", KeyRecord{}, fmt.Errorf("gateway: key generation: %w", err)
		}
		id = "k_" + hex.EncodeToString(b[:])
	} else if !validKeyID(id) {
		return "", KeyRecord{}, SpecError("id must be 1-64 characters of [A-Za-z0-9_.-]")
	}
	plain := KeyPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(plain))
	rec := &KeyRecord{
		ID:        id,
		Hash:      hex.EncodeToString(sum[:]),
		Owner:     spec.Owner,
		Tier:      spec.Tier,
		Scopes:    slices.Clone(spec.Scopes),
		Roles:     slices.Clone(spec.Roles),
		CreatedAt: s.now().UTC().Truncate(time.Second),
		ExpiresAt: spec.ExpiresAt,
	}
	if r := s.reserved.Load(); r != nil && (*r)(id) {
		return "", KeyRecord{}, ErrKeyExists
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	_, dup := s.byID[id]
	s.mu.RUnlock()
	if dup {
		return "", KeyRecord{}, ErrKeyExists
	}
	if err := s.put(rec); err != nil {
		return "", KeyRecord{}, err
	}
	s.mu.Lock()
	s.byHash[sum] = rec
	s.byID[id] = rec
	s.mu.Unlock()
	return plain, *rec, nil
}

// put writes rec; s.writeMu must be held.
func (s *KeyStore) put(rec *KeyRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(keysBucket).Put([]byte(rec.ID), v)
	})
}

// save writes rec and indexes it for lookups; s.writeMu must be held.
func (s *KeyStore) save(rec *KeyRecord) error {
	if err := s.put(rec); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index(rec)
}

// Revoke marks the key revoked; the next request using it is refused.
// Revoking a revoked key is a no-op that returns the record.
func (s *KeyStore) Revoke(id string) (KeyRecord, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	old := s.byID[id]
	s.mu.RUnlock()
	if old == nil {
		return KeyRecord{}, ErrKeyNotFound
	}
	if old.RevokedAt != nil {
		return *old, nil
	}
	// Records are shared with readers, so revocation swaps in a copy.
	rec := *old
	now := s.now().UTC().Truncate(time.Second)
	rec.RevokedAt = &now
	if err := s.save(&rec); err != nil {
		return KeyRecord{}, err
	}
	return rec, nil
}

// Import stores a record created on another node of the cluster, so a key
// made (or revoked) through one node's admin API holds on every node. An
// unknown id is added; a known id with the same hash takes the incoming
// revocation; a known id with another hash, or an unknown id with the hash
// of a known key, is ErrKeyExists. Revocation
// never reverts: an imported unrevoked copy leaves a revoked key revoked.
func (s *KeyStore) Import(rec KeyRecord) (KeyRecord, error) {
	if !validKeyID(rec.ID) {
		return KeyRecord{}, SpecError("id must be 1-64 characters of [A-Za-z0-9_.-]")
	}
	if h, err := hex.DecodeString(rec.Hash); err != nil || len(h) != 32 {
		return KeyRecord{}, SpecError("hash must be a hex SHA-256")
	}
	if rec.Owner == "" || !cleanWord(rec.Owner) {
		return KeyRecord{}, SpecError("owner must be a non-empty word")
	}
	if rec.Tier != "" && !cleanWord(rec.Tier) {
		return KeyRecord{}, SpecError("tier must be a word")
	}
	for _, w := range append(slices.Clone(rec.Scopes), rec.Roles...) {
		if !cleanWord(w) {
			return KeyRecord{}, SpecError(fmt.Sprintf("scope or role %q must be a non-empty word", w))
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	h, _ := hex.DecodeString(rec.Hash)
	s.mu.RLock()
	old := s.byID[rec.ID]
	twin := s.byHash[[32]byte(h)]
	s.mu.RUnlock()
	if old == nil && twin != nil {
		// Another id owns this hash; indexing a second record under it
		// would replace the first in lookups (and could un-revoke it).
		return KeyRecord{}, ErrKeyExists
	}
	if old != nil {
		if old.Hash != rec.Hash {
			return KeyRecord{}, ErrKeyExists
		}
		if old.RevokedAt != nil || rec.RevokedAt == nil {
			return *old, nil
		}
		c := *old
		c.RevokedAt = rec.RevokedAt
		rec = c
	}
	rec.Scopes, rec.Roles = slices.Clone(rec.Scopes), slices.Clone(rec.Roles)
	if err := s.save(&rec); err != nil {
		return KeyRecord{}, err
	}
	return rec, nil
}

// Get returns one record.
func (s *KeyStore) Get(id string) (KeyRecord, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := s.byID[id]
	if rec == nil {
		return KeyRecord{}, false
	}
	return *rec, true
}

// List returns every record, sorted by id.
func (s *KeyStore) List() []KeyRecord {
	s.mu.RLock()
	out := make([]KeyRecord, 0, len(s.byID))
	for _, r := range s.byID {
		out = append(out, *r)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b KeyRecord) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// HashKey returns the hex SHA-256 of a key, the form config stores.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
