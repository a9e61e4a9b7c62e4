//go:build unix

package lb

import (
	"net"
	"syscall"
)

// spokeWhileIdle reports whether the backend sent anything (bytes, or the
// end of the stream) on c while it sat idle in the pool. It peeks without
// blocking and consumes nothing.
func spokeWhileIdle(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait: EAGAIN is the answer "nothing"
	})
	// Data (n > 0) and EOF (n == 0) both leave rerr nil.
	return err == nil && rerr == nil
}
