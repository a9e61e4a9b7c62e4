//go:build unix && !linux

package rawsock

import "syscall"

// Peek receives into b without consuming and without waiting
// (MSG_PEEK|MSG_DONTWAIT) from the socket fd: a pool's check that an idle
// connection holds nothing. EAGAIN: nothing there; n == 0 and no error:
// the peer closed.
func Peek(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if e, ok := err.(syscall.Errno); ok {
		return n, e
	}
	if err != nil {
		return n, syscall.EIO
	}
	return n, 0
}
