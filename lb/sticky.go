package lb

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/httpwire"
)

// sticky pins clients to a backend with a cookie "ID.SIG", where SIG is a
// truncated HMAC-SHA256 of the pool name and backend id. A cookie with a
// lifetime is "ID.TS.SIG" instead: TS, the Unix second it was issued, is
// signed too, and a response to a request whose cookie is past half its
// lifetime carries a fresh one, so an active client keeps its pin (sliding
// expiry, as HAProxy's maxidle) instead of losing it mid-session when the
// first cookie's Max-Age runs out. The lifetime holds on the server too: a
// signed cookie replayed after it ran out (a script, a client that ignores
// Max-Age) no longer pins. A cookie that does not verify is ignored, so a
// client cannot steer itself to a backend of its choosing.
type sticky struct {
	enabled bool
	name    string
	maxAge  int // seconds; 0 = session cookie
	pool    string
	key     []byte
	// enc decodes signatures strictly: one canonical encoding per signature.
	enc *base64.Encoding
}

// stickySigLen is the signature length in bytes (128 bits).
const stickySigLen = 16

func newSticky(pool string, c StickyConfig, key []byte) *sticky {
	return &sticky{
		enabled: c.Enabled,
		name:    c.Cookie,
		maxAge:  int(c.Lifetime.D().Seconds()),
		pool:    pool,
		key:     key,
		enc:     base64.RawURLEncoding.Strict(),
	}
}

// sig signs id, and ts when it is not "" (a cookie with a lifetime).
func (s *sticky) sig(id, ts string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(s.pool))
	m.Write([]byte{0})
	m.Write([]byte(id))
	if ts != "" {
		m.Write([]byte{0})
		m.Write([]byte(ts))
	}
	return m.Sum(nil)[:stickySigLen]
}

// value is the cookie value pinning id, issued at now (Unix seconds).
func (s *sticky) value(id string, now int64) string {
	if s.maxAge == 0 {
		return id + "." + base64.RawURLEncoding.EncodeToString(s.sig(id, ""))
	}
	ts := strconv.FormatInt(now, 10)
	return id + "." + ts + "." + base64.RawURLEncoding.EncodeToString(s.sig(id, ts))
}

// lookup returns the backend the request's cookie pins, or nil when there
// is no cookie, it does not verify, its lifetime ran out, or the backend is
// gone; and whether the cookie should be re-issued at now (Unix seconds):
// past half its lifetime, or without the issue time a lifetime asks for.
func (s *sticky) lookup(r *http.Request, byID map[string]*Backend, now int64) (b *Backend, refresh bool) {
	c, err := r.Cookie(s.name)
	if err != nil {
		return nil, false
	}
	i := strings.LastIndexByte(c.Value, '.')
	if i <= 0 {
		return nil, false
	}
	got, err := s.enc.DecodeString(c.Value[i+1:])
	if err != nil || len(got) != stickySigLen {
		return nil, false
	}
	head := c.Value[:i]
	// "ID.TS" first; an ID may itself hold dots, so a failed check falls
	// back to the whole head as the ID.
	if j := strings.LastIndexByte(head, '.'); j > 0 {
		id, ts := head[:j], head[j+1:]
		if issued, err := strconv.ParseInt(ts, 10, 64); err == nil && ts == strconv.FormatInt(issued, 10) && hmac.Equal(got, s.sig(id, ts)) {
			if s.maxAge > 0 && now-issued >= int64(s.maxAge) {
				return nil, false // expired: re-pinned like a client without one
			}
			b = byID[id]
			return b, b != nil && s.maxAge > 0 && now-issued >= int64(s.maxAge/2)
		}
	}
	if !hmac.Equal(got, s.sig(head, "")) {
		return nil, false
	}
	b = byID[head]
	return b, b != nil && s.maxAge > 0
}

// cookie is the Set-Cookie value pinning b, issued at now (Unix seconds).
func (s *sticky) cookie(b *Backend, secure bool, now int64) string {
	c := http.Cookie{
		Name:     s.name,
		Value:    s.value(b.id, now),
		Path:     "/",
		MaxAge:   s.maxAge,
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	}
	return c.String()
}

// pinOf returns the backend r's sticky cookie pins and whether the cookie
// is due to be re-issued (see sticky.lookup); nil without sticky cookies.
func (st *poolState) pinOf(r *http.Request, now time.Time) (*Backend, bool) {
	if !st.sticky.enabled {
		return nil, false
	}
	return st.sticky.lookup(r, st.byID, now.Unix())
}

// pick is the backend for try: the pinned one first, if it may take the
// request, else the policy's.
func (st *poolState) pick(sel *Selection, try int, pinned *Backend) *Backend {
	if try == 0 && pinned != nil && pinned.usable(sel.now) {
		return pinned
	}
	return st.policy.Pick(sel)
}

// repin sets the sticky cookie on resp, answered by b, when the request
// was not pinned to b or its cookie is due to be re-issued.
func (st *poolState) repin(resp *http.Response, head *[]httpwire.Field, b, pinned *Backend, refresh, secure bool, now time.Time) {
	if !st.sticky.enabled || b == pinned && !refresh {
		return
	}
	c := st.sticky.cookie(b, secure, now.Unix())
	if resp.Header == nil {
		*head = append(*head, httpwire.Field{Name: "Set-Cookie", Value: c})
		return
	}
	resp.Header.Add("Set-Cookie", c)
}
