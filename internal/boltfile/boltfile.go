// Package boltfile opens bbolt databases so that a damaged or busy file is
// an error naming the file, never a crash.
//
// bbolt trusts its file: a truncated database (a full disk, a bad copy, a
// restore cut short) makes it panic while loading the free list, or fault
// on a page past the end of the file, and a file locked by another process
// makes Open fail with a bare "timeout". Open and Update turn both into
// errors that say which file and what is wrong with it; each store decides
// what follows: the cache starts empty, a store of data refuses to start.
package boltfile

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrDamaged is returned (wrapped) when the file is not a readable bbolt
// database: garbage, truncated, a bad checksum, an unknown version.
var ErrDamaged = errors.New("damaged database file")

// ErrLocked is returned (wrapped) when another process holds the file.
var ErrLocked = errors.New("locked by another process")

// Open opens (creating if needed) the database at path, waiting up to
// timeout for another process's lock.
func Open(path string, timeout time.Duration) (db *bolt.DB, err error) {
	if fi, serr := os.Stat(path); serr == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file (%s)", path, ErrDamaged, fi.Mode().Type())
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer damaged(path, &err)
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%s: %w (waited %s): is another outpost process using it?", path, ErrLocked, timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return nil, fmt.Errorf("%s: %w: %v", path, ErrDamaged, err)
	}
	return nil, err
}

// Update runs fn in a read-write transaction of db (opened from path), as
// db.Update does, but a page bbolt cannot read is an ErrDamaged error
// rather than a panic. The transaction is rolled back in that case. Use it
// for the load at startup, which reads every page a store relies on.
func Update(db *bolt.DB, path string, fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer damaged(path, &err)
	return db.Update(fn)
}

// damaged turns a bbolt panic, or (with SetPanicOnFault) a fault on a page
// past the end of a truncated file, into an ErrDamaged error in *err. It
// must be deferred directly by the function that calls into bbolt.
func damaged(path string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: %w: %v", path, ErrDamaged, r)
	}
}
