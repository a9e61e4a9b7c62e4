package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// fileName returns a fresh relative body path for id and rendition; the
// generation suffix means a replacement never overwrites a file a reader
// may have open.
func (s *Store) fileName(id, rendition string) string {
	sum := sha256.Sum256([]byte(id))
	h := hex.EncodeToString(sum[:16])
	return fmt.Sprintf("%s/%s/%s.%s.%x", h[0:2], h[2:4], h, rendition, s.gen.Add(1))
}

// Writer receives one body. Write errors are sticky and make Commit fail.
type Writer struct {
	s    *Store
	f    File
	n    int64
	err  error
	done bool
}

// Create starts a body in the temp directory.
func (s *Store) Create() (*Writer, error) {
	f, err := s.opts.CreateTemp(s.tmpDir, "body-*")
	if err != nil {
		return nil, err
	}
	return &Writer{s: s, f: f}, nil
}

// Write appends to the body.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	if err == nil && w.n > w.s.opts.MaxObjectSize {
		err = ErrTooLarge
	}
	if err != nil {
		w.err = err
	}
	return n, err
}

// Err returns the first write error.
func (w *Writer) Err() error { return w.err }

// Written returns the bytes written so far.
func (w *Writer) Written() int64 { return w.n }

// TempPath is the temp file's path, for readers following a body being written.
func (w *Writer) TempPath() string { return w.f.Name() }

// Abort discards the body.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
}

// finish closes and renames the body into the objects directory.
func (w *Writer) finish(rel string) error {
	if w.done {
		return errors.New("store: writer already finished")
	}
	w.done = true
	cerr := w.f.Close()
	if w.err == nil {
		w.err = cerr
	}
	if w.err != nil {
		os.Remove(w.f.Name())
		return w.err
	}
	dst := filepath.Join(w.s.objDir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	if err := os.Rename(w.f.Name(), dst); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	return nil
}

// Commit publishes the written body with m (Size and File are set here),
// replacing any entry with the same key and variant. When the Vary names
// differ from the stored ones, the key's other variants are dropped.
func (w *Writer) Commit(m Meta) (*Entry, error) {
	s := w.s
	m.Size = w.n
	m.File = s.fileName(entryID(m.Key, m.Variant), "id")
	m.Encodings = nil
	if s.variantsFull(m) {
		w.Abort()
		return nil, ErrTooManyVariants
	}
	if err := w.finish(m.File); err != nil {
		return nil, err
	}
	e := s.newEntry(m)
	e.accessed.Store(s.opts.Clock().UnixNano())
	if _, err := s.publish(e, nil); err != nil {
		// Without its record the body would vanish on restart: take it
		// back out rather than keep memory and index apart.
		s.Remove([]*Entry{e})
		return nil, err
	}
	return e, nil
}

// CommitEncoding publishes the written body as rendition name of base. It
// fails with ErrStale when base is no longer the stored entry.
func (w *Writer) CommitEncoding(base *Entry, name string) (*Entry, error) {
	s := w.s
	m := base.Meta.Clone()
	rel := s.fileName(base.id, name)
	if err := w.finish(rel); err != nil {
		return nil, err
	}
	m.Encodings = append(m.Encodings, Encoding{Name: name, File: rel, Size: w.n})
	e := s.newEntry(m)
	e.accessed.Store(base.accessed.Load())
	if !s.isCurrent(base) {
		os.Remove(filepath.Join(s.objDir, rel))
		return nil, ErrStale
	}
	ok, err := s.publish(e, base)
	if !ok {
		os.Remove(filepath.Join(s.objDir, rel))
		return nil, ErrStale
	}
	if err != nil {
		s.Remove([]*Entry{e})
		return nil, err
	}
	return e, nil
}
