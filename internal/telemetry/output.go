package telemetry

import (
	"io"
	"sync"
	"time"
)

// Output is the process's log stream (stderr) shared by the process log
// and the access log. A process log line goes out at once. Access lines,
// one per request, are gathered and written in batches — when size bytes
// are pending, every interval, and before any process log line — as
// nginx's `access_log … buffer= flush=` and Envoy's file access log do:
// one write(2) per line cost a request on the pass lane ~2 µs of system
// time. Because a process line first writes what is pending, the stream
// keeps the order in which lines were logged; and because every write
// goes out under one lock, no two of them can interleave in a pipe, even
// past PIPE_BUF.
//
// What is pending is lost if the process dies without Flush (a crash, a
// kill -9): at most interval's worth of access lines, never a process
// line.
type Output struct {
	mu       sync.Mutex
	w        io.Writer
	pending  []byte
	size     int
	interval time.Duration
	timer    *time.Timer // armed while lines are pending
}

// NewOutput returns an output writing to w that gathers up to size bytes
// of access lines for at most interval. size <= 0 or interval <= 0:
// every access line is written at once, as a process line is.
func NewOutput(w io.Writer, size int, interval time.Duration) *Output {
	if interval <= 0 {
		size = 0
	}
	return &Output{w: w, size: size, interval: interval}
}

// Direct is the writer of the process log: each Write goes out at once,
// after the access lines pending before it.
func (o *Output) Direct() io.Writer { return directWriter{o} }

// Access is the writer of the access log: its Writes, each one whole line
// (as slog's handlers write them), are gathered.
func (o *Output) Access() io.Writer { return accessWriter{o} }

// Flush writes what is pending. The process calls it before it exits.
func (o *Output) Flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.flushLocked()
}

func (o *Output) flushLocked() error {
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	if len(o.pending) == 0 {
		return nil
	}
	_, err := o.w.Write(o.pending)
	// Lines that failed to go out are dropped, as a failed unbuffered
	// write drops its line: holding them would grow without bound while
	// stderr is gone.
	if cap(o.pending) > 4*o.size {
		o.pending = nil // a burst grew it: do not keep it
	} else {
		o.pending = o.pending[:0]
	}
	return err
}

type directWriter struct{ o *Output }

func (d directWriter) Write(p []byte) (int, error) {
	o := d.o
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.flushLocked()
	return o.w.Write(p)
}

type accessWriter struct{ o *Output }

func (a accessWriter) Write(p []byte) (int, error) {
	o := a.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.size <= 0 {
		return o.w.Write(p)
	}
	if o.pending == nil {
		o.pending = make([]byte, 0, o.size+len(p))
	}
	o.pending = append(o.pending, p...)
	if len(o.pending) >= o.size {
		if err := o.flushLocked(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if o.timer == nil {
		o.timer = time.AfterFunc(o.interval, func() { _ = o.Flush() })
	}
	return len(p), nil
}
