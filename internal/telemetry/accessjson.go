package telemetry

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// jsonLines is a slog.Handler that writes records exactly as
// slog.JSONHandler does, byte for byte, for the attributes an access line
// is made of — strings, integers, booleans and ordinary floats — at a
// third of the cost: no reflection, no json.Marshal for a float, no
// per-attribute state. Anything else in a record (a group, a time, a
// duration, an Any value, an empty key) sends that record through
// slog.JSONHandler itself, which writes to the same writer; WithGroup
// hands the logger over to it altogether. FuzzJSONLines holds the two to
// the same output.
//
// w must take concurrent Writes, one whole line each (Output's writers
// do): unlike slog's handler, this one holds no lock of its own.
type jsonLines struct {
	w     io.Writer
	level slog.Leveler
	pre   []byte       // the WithAttrs attributes, formatted: `,"k":v...`
	std   slog.Handler // slog's handler with the same attributes
}

// newJSONLines returns the handler; of opts, only Level is honoured (nil:
// info), as NewLogger sets no other.
func newJSONLines(w io.Writer, opts *slog.HandlerOptions) *jsonLines {
	h := &jsonLines{w: w, std: slog.NewJSONHandler(w, opts)}
	if opts != nil {
		h.level = opts.Level
	}
	return h
}

func (h *jsonLines) Enabled(_ context.Context, l slog.Level) bool {
	floor := slog.LevelInfo
	if h.level != nil {
		floor = h.level.Level()
	}
	return l >= floor
}

func (h *jsonLines) WithAttrs(as []slog.Attr) slog.Handler {
	pre, ok := appendAttrs(append([]byte(nil), h.pre...), as)
	if !ok {
		return h.std.WithAttrs(as)
	}
	return &jsonLines{w: h.w, level: h.level, pre: pre, std: h.std.WithAttrs(as)}
}

func (h *jsonLines) WithGroup(name string) slog.Handler { return h.std.WithGroup(name) }

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (h *jsonLines) Handle(ctx context.Context, r slog.Record) error {
	bp := lineBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 { // an odd huge line is not kept
			lineBufs.Put(bp)
		}
	}()
	b := (*bp)[:0]
	b = append(b, '{')
	if !r.Time.IsZero() {
		if y := r.Time.Year(); y < 0 || y >= 10000 {
			return h.std.Handle(ctx, r) // slog writes its error for it
		}
		b = append(b, `"time":"`...)
		b = r.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendString(b, r.Level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, r.Message)
	b = append(b, h.pre...)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		b, ok = appendAttr(b, a)
		return ok
	})
	if !ok {
		return h.std.Handle(ctx, r)
	}
	b = append(b, "}\n"...)
	*bp = b
	_, err := h.w.Write(b)
	return err
}

// appendAttrs appends as; false if one of them is not for this handler.
func appendAttrs(b []byte, as []slog.Attr) ([]byte, bool) {
	for _, a := range as {
		var ok bool
		if b, ok = appendAttr(b, a); !ok {
			return b, false
		}
	}
	return b, true
}

// appendAttr appends `,"key":value`; false for what only slog's handler
// writes as it should.
func appendAttr(b []byte, a slog.Attr) ([]byte, bool) {
	if a.Key == "" {
		return b, false // slog drops some such attributes and inlines groups
	}
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		b = append(b, ',')
		b = appendString(b, a.Key)
		b = append(b, ':')
		return appendString(b, v.String()), true
	case slog.KindInt64:
		b = append(b, ',')
		b = appendString(b, a.Key)
		b = append(b, ':')
		return strconv.AppendInt(b, v.Int64(), 10), true
	case slog.KindUint64:
		b = append(b, ',')
		b = appendString(b, a.Key)
		b = append(b, ':')
		return strconv.AppendUint(b, v.Uint64(), 10), true
	case slog.KindBool:
		b = append(b, ',')
		b = appendString(b, a.Key)
		b = append(b, ':')
		return strconv.AppendBool(b, v.Bool()), true
	case slog.KindFloat64:
		// What json.Marshal writes, in the range where that is plain
		// 'f' formatting; it writes exponents (and fails on NaN and
		// the infinities) outside it.
		f := v.Float64()
		if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) || math.IsNaN(f) {
			return b, false
		}
		b = append(b, ',')
		b = appendString(b, a.Key)
		b = append(b, ':')
		return strconv.AppendFloat(b, f, 'f', -1, 64), true
	}
	return b, false
}

// appendString appends s as a JSON string, escaped as slog's JSON handler
// escapes (log/slog's appendEscapedJSONString): control characters, '"'
// and '\\'; invalid UTF-8 as U+FFFD; U+2028 and U+2029; HTML characters
// left alone.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
