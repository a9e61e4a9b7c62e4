package tlsedge

import (
	"bytes"
	"context"
	"errors"
	"io/fs"

	"github.com/caddyserver/certmagic"
)

// Mirrored is the shared storage with a copy on the node's disk. What the
// node stores or loads is also written to Local, and when Redis fails (it
// is down or unreachable), reads are answered from that copy, so a node
// restarted during an outage still serves the certificates it had.
// Writes and locks need Redis: no certificate is ordered or renewed
// without it. A key the copy lacks is reported with Redis's error, never
// as missing, which would make certmagic try to order it. A key Redis
// reports missing is missing, and its copy goes.
type Mirrored struct {
	Shared *RedisStorage
	Local  certmagic.Storage
}

var (
	_ certmagic.Storage   = (*Mirrored)(nil)
	_ certmagic.TryLocker = (*Mirrored)(nil)
)

// NewMirrored is Shared with a file copy under dir.
func NewMirrored(shared *RedisStorage, dir string) *Mirrored {
	return &Mirrored{Shared: shared, Local: &certmagic.FileStorage{Path: dir}}
}

// Store implements certmagic.Storage: in Redis, then in the copy.
func (m *Mirrored) Store(ctx context.Context, key string, value []byte) error {
	if err := m.Shared.Store(ctx, key, value); err != nil {
		return err
	}
	_ = m.Local.Store(ctx, key, value) // a copy that failed is refreshed at the next load
	return nil
}

// Load implements certmagic.Storage.
func (m *Mirrored) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := m.Shared.Load(ctx, key)
	switch {
	case err == nil:
		if old, lerr := m.Local.Load(ctx, key); lerr != nil || !bytes.Equal(old, v) {
			_ = m.Local.Store(ctx, key, v)
		}
		return v, nil
	case errors.Is(err, fs.ErrNotExist):
		_ = m.Local.Delete(ctx, key)
		return nil, err
	}
	if v, lerr := m.Local.Load(ctx, key); lerr == nil {
		return v, nil
	}
	return nil, err
}

// Delete implements certmagic.Storage: in Redis, then in the copy.
func (m *Mirrored) Delete(ctx context.Context, key string) error {
	if err := m.Shared.Delete(ctx, key); err != nil {
		return err
	}
	return m.Local.Delete(ctx, key)
}

// Exists implements certmagic.Storage; the copy answers when Redis fails.
func (m *Mirrored) Exists(ctx context.Context, key string) bool {
	ok, err := m.Shared.exists(ctx, key)
	if err != nil {
		return m.Local.Exists(ctx, key)
	}
	return ok
}

// List implements certmagic.Storage; the copy answers when Redis fails.
func (m *Mirrored) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	keys, err := m.Shared.List(ctx, dir, recursive)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		if lk, lerr := m.Local.List(ctx, dir, recursive); lerr == nil {
			return lk, nil
		}
	}
	return keys, err
}

// Stat implements certmagic.Storage; the copy answers when Redis fails.
func (m *Mirrored) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	ki, err := m.Shared.Stat(ctx, key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		if lki, lerr := m.Local.Stat(ctx, key); lerr == nil {
			return lki, nil
		}
	}
	return ki, err
}

// Lock implements certmagic.Locker, in Redis only.
func (m *Mirrored) Lock(ctx context.Context, name string) error { return m.Shared.Lock(ctx, name) }

// TryLock implements certmagic.TryLocker, in Redis only.
func (m *Mirrored) TryLock(ctx context.Context, name string) (bool, error) {
	return m.Shared.TryLock(ctx, name)
}

// Unlock implements certmagic.Locker.
func (m *Mirrored) Unlock(ctx context.Context, name string) error { return m.Shared.Unlock(ctx, name) }

// String names the storage in certmagic's logs.
func (m *Mirrored) String() string { return m.Shared.String() + " (copy on disk)" }
