//go:build unix

package edge

import "syscall"

// autoMaxConns is half the process's open-file limit (Go raises the soft
// limit to the hard one at start), or 0 when there is no useful limit.
func autoMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	cur := uint64(rl.Cur) //nolint:unconvert // int64 on some systems
	if cur == 0 || cur >= 1<<31 {
		return 0 // unlimited, or beyond what connections could reach
	}
	return int(cur / 2)
}
