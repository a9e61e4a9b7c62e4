package http2

import (
	"encoding/binary"
	"errors"
	"net/http"
	"net/textproto"
	"strings"

	xhttp2 "golang.org/x/net/http2"
)

// Frame writers: each appends one frame to the connection's buffer and
// must be called with wmu held (lockWrite). Errors stick in the
// bufio.Writer and surface at the flush in unlockWrite.

func (c *conn) frameHeader(length int, typ xhttp2.FrameType, flags xhttp2.Flags, id uint32) {
	// Built in the writer's own buffer: a local array would escape
	// through Write and cost an allocation per frame.
	h := c.bw.AvailableBuffer()
	h = append(h, byte(length>>16), byte(length>>8), byte(length), byte(typ), byte(flags))
	h = binary.BigEndian.AppendUint32(h, id&(1<<31-1))
	c.bw.Write(h)
}

func (c *conn) writeSettings() {
	settings := [...]struct {
		id  xhttp2.SettingID
		val uint32
	}{
		{xhttp2.SettingMaxConcurrentStreams, c.maxStreams},
		{xhttp2.SettingMaxHeaderListSize, c.s.maxHeaderList()},
		{xhttp2.SettingInitialWindowSize, initialRecvWindow},
	}
	c.frameHeader(6*len(settings), xhttp2.FrameSettings, 0, 0)
	var b [6]byte
	for _, s := range settings {
		binary.BigEndian.PutUint16(b[:2], uint16(s.id))
		binary.BigEndian.PutUint32(b[2:], s.val)
		c.bw.Write(b[:])
	}
}

func (c *conn) writeSettingsAck() {
	c.frameHeader(0, xhttp2.FrameSettings, xhttp2.FlagSettingsAck, 0)
}

func (c *conn) writeWindowUpdate(id uint32, n uint32) {
	c.frameHeader(4, xhttp2.FrameWindowUpdate, 0, id)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	c.bw.Write(b[:])
}

func (c *conn) writePing(data [8]byte) {
	c.frameHeader(8, xhttp2.FramePing, xhttp2.FlagPingAck, 0)
	c.bw.Write(data[:])
}

func (c *conn) writeRSTStream(id uint32, code xhttp2.ErrCode) {
	c.frameHeader(4, xhttp2.FrameRSTStream, 0, id)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	c.bw.Write(b[:])
}

func (c *conn) writeGoAway(last uint32, code xhttp2.ErrCode) {
	c.frameHeader(8, xhttp2.FrameGoAway, 0, 0)
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], last)
	binary.BigEndian.PutUint32(b[4:], uint32(code))
	c.bw.Write(b[:])
}

// writeData writes p as one DATA frame; the caller took the window and
// keeps p within the peer's frame size.
func (c *conn) writeData(id uint32, p []byte, end bool) {
	var flags xhttp2.Flags
	if end {
		flags = xhttp2.FlagDataEndStream
	}
	c.frameHeader(len(p), xhttp2.FrameData, flags, id)
	c.bw.Write(p)
}

// writeHeaderBlock writes an encoded header block as HEADERS and as many
// CONTINUATION frames as the peer's frame size needs.
func (c *conn) writeHeaderBlock(id uint32, block []byte, end bool) {
	max := int(c.frameSize.Load())
	flags := xhttp2.Flags(0)
	if end {
		flags |= xhttp2.FlagHeadersEndStream
	}
	typ := xhttp2.FrameHeaders
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), max)
		f := flags
		if n == len(block) {
			if typ == xhttp2.FrameHeaders {
				f |= xhttp2.FlagHeadersEndHeaders
			} else {
				f = xhttp2.FlagContinuationEndHeaders
			}
		}
		if typ == xhttp2.FrameContinuation && n < len(block) {
			f = 0
		}
		c.frameHeader(n, typ, f, id)
		c.bw.Write(block[:n])
		block = block[n:]
		typ, flags = xhttp2.FrameContinuation, 0
	}
}

// Header names and values.

func foreachToken(v string, fn func(string)) {
	for _, t := range strings.Split(v, ",") {
		if t = textproto.TrimString(t); t != "" {
			fn(t)
		}
	}
}

// declaredTrailers is the request's Trailer map from its "Trailer"
// field, as net/http builds it: canonical names, leaving out those that
// may not be trailers.
func declaredTrailers(vv []string) http.Header {
	var tr http.Header
	for _, v := range vv {
		foreachToken(v, func(k string) {
			switch k = http.CanonicalHeaderKey(k); k {
			case "Transfer-Encoding", "Trailer", "Content-Length":
			default:
				if tr == nil {
					tr = http.Header{}
				}
				tr[k] = nil
			}
		})
	}
	return tr
}

var errConnHeader = errors.New("connection-specific header field in an HTTP/2 request")

// checkHeaders rejects fields HTTP/2 forbids in a request (RFC 9113
// 8.2.2): a request carrying them is malformed.
func checkHeaders(h http.Header) error {
	for _, k := range [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"} {
		if _, ok := h[k]; ok {
			return errConnHeader
		}
	}
	if te, ok := h["Te"]; ok && (len(te) > 1 || te[0] != "trailers" && te[0] != "") {
		return errConnHeader
	}
	return nil
}
