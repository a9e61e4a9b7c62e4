package lb

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// sticky pins clients to a backend with a cookie "ID.SIG", where SIG is a
// truncated HMAC-SHA256 of the pool name and backend id. A cookie that does
// not verify is ignored, so a client cannot steer itself to a backend of its
// choosing.
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

func (s *sticky) sig(id string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(s.pool))
	m.Write([]byte{0})
	m.Write([]byte(id))
	return m.Sum(nil)[:stickySigLen]
}

func (s *sticky) value(id string) string {
	return id + "." + base64.RawURLEncoding.EncodeToString(s.sig(id))
}

// lookup returns the backend the request's cookie pins, or nil when there
// is no cookie, it does not verify, or the backend is gone.
func (s *sticky) lookup(r *http.Request, byID map[string]*Backend) *Backend {
	c, err := r.Cookie(s.name)
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(c.Value, '.')
	if i <= 0 {
		return nil
	}
	id := c.Value[:i]
	got, err := s.enc.DecodeString(c.Value[i+1:])
	if err != nil || len(got) != stickySigLen {
		return nil
	}
	if !hmac.Equal(got, s.sig(id)) {
		return nil
	}
	return byID[id]
}

// cookie is the Set-Cookie value pinning b.
func (s *sticky) cookie(b *Backend, secure bool) string {
	c := http.Cookie{
		Name:     s.name,
		Value:    s.value(b.id),
		Path:     "/",
		MaxAge:   s.maxAge,
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	}
	return c.String()
}
