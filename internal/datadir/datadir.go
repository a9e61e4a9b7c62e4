// Package datadir claims a node's data directory for one process.
//
// A data directory holds state that one process writes at a time: the DNS
// runtime records file, the API key store, the purge fan-out queue,
// certificates and usually the cache. Two processes started on the same
// directory would overwrite each other's records file, or wait on each
// other's bbolt locks until a timeout that names no culprit. Lock makes the
// second one stop at once, saying which process holds the directory.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockName is the lock file's name inside the data directory.
const LockName = "outpost.lock"

// ErrInUse is returned (wrapped) when another process holds the directory.
var ErrInUse = errors.New("in use by another outpost process")

// Lock is a held data directory. The lock is advisory (flock(2)) and goes
// away with the process, so a crash never leaves a stale lock behind; the
// file itself stays, holding the last holder's pid.
type Lock struct {
	f   *os.File
	dir string
}

// Acquire creates dir if needed and locks it, without waiting.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data_dir: lock %s: %w", path, err)
	}
	if !held {
		b, _ := os.ReadFile(path)
		f.Close()
		who := ""
		if pid := strings.TrimSpace(string(b)); pid != "" {
			who = " (pid " + pid + ")"
		}
		return nil, fmt.Errorf("data_dir %s: %w%s; give each process its own data_dir", dir, ErrInUse, who)
	}
	// The pid is for the operator reading the error above; the lock is
	// what counts, so a failed write is not fatal.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f, dir: dir}, nil
}

// Dir is the locked directory.
func (l *Lock) Dir() string { return l.dir }

// Release unlocks the directory. The lock file stays.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the flock
	l.f = nil
	return err
}
