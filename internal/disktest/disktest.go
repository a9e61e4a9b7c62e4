// Package disktest gives tests a really full disk: a tiny tmpfs, so that
// bbolt, body files and atomic writes meet ENOSPC from the kernel rather
// than from an injected fault.
package disktest

import (
	"os/exec"
	"testing"
)

// Tiny mounts a 1 MiB tmpfs on a fresh temp directory and returns it; the
// test is skipped where mount is not permitted (not root, no tmpfs). It is
// unmounted when the test ends: close every file on it before that.
func Tiny(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a 1 MiB tmpfs to fill (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}
