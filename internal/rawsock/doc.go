// Package rawsock moves the bytes of TCP connections with system calls the
// Go runtime does not book-keep.
//
// Go's network reads and writes enter the kernel through the runtime's
// system-call path, which marks the goroutine's processor as blocked so
// that, should the call take longer than a scheduler tick (20 µs), the
// runtime's monitor thread hands the processor to another thread. A socket
// of the net package is non-blocking, so its reads and writes never block;
// but on a loaded machine the kernel often switches the calling thread out
// on the way back from a write that woke the peer, and the monitor then
// takes the processor away, wakes a thread to run it, and keeps itself
// waking every 20 µs. On a pass-through proxy sharing two cores with its
// client and backends that book-keeping, the hand-offs and the monitor's
// wake-ups cost about as much CPU per request as the proxy's own code
// (docs/lb.md, the fifteenth session).
//
// A Conn reads and writes its socket with raw system calls made inside
// syscall.RawConn's Read and Write, so it still waits in the runtime's
// network poller (deadlines, Close and readiness are the net package's,
// unchanged) and only the book-keeping of calls that cannot block is gone.
// Everything else — deadlines, options, sendfile through ReadFrom,
// CloseWrite — is the *net.TCPConn's it wraps.
//
// One thing is lost with the book-keeping: syscall.Read and Write tell the
// race detector that the kernel read or wrote the buffer, and raw calls
// do not, so a race on a buffer while a Conn fills or sends it goes
// unreported. Buffers handed to a Conn here are the callers' own for the
// call, as with any io.Reader or io.Writer.
package rawsock
