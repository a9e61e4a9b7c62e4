// Package identity is the contract between the gateway and origin services:
// the gateway states who the caller is in request headers and signs them
// with a shared HMAC secret; origins verify the signature and the timestamp
// before trusting any of it.
//
// It is a leaf package with no Outpost dependencies so that both sides (and
// third-party origin services) can import it.
//
// Wire format (all headers are always stripped from client requests by the
// gateway before it sets its own):
//
//	X-Outpost-User:      user id (subject)
//	X-Outpost-Issuer:    the token's issuer (JWT "iss"), when it has one
//	X-Outpost-Key-Id:    API key id, when the caller used an API key
//	X-Outpost-Scopes:    space-separated scopes
//	X-Outpost-Roles:     space-separated roles
//	X-Outpost-Tier:      rate-limit tier
//	X-Outpost-Timestamp: unix seconds when the gateway signed
//	X-Outpost-Signature: "v2=" + base64url(HMAC-SHA256(secret, canonical)),
//	                     "v3=" … for an identity with an issuer
//
// canonical = "v2\n" + method + "\n" + path + "\n" + raw query + "\n" +
// timestamp + "\n" + user + "\n" + keyid + "\n" + scopes + "\n" + roles +
// "\n" + tier
//
// and for an identity with an issuer, "v3\n" + the same + "\n" + issuer.
//
// v2 adds the query string (v1 signed only method and path): someone who
// sees one signed request between gateway and origin cannot replay its
// identity on the same path with other parameters. The body is not signed
// (it streams); the timestamp window bounds such a replay.
//
// v3 adds the issuer: a gateway that accepts tokens from several issuers
// sees the same "sub" from each of them for different people, so the user
// id alone does not say who the caller is; User and Issuer together do.
// Identities without an issuer (API keys, tokens without "iss") are signed
// as v2, so origins built against v2 keep verifying them; an origin must
// read Issuer once its gateway trusts more than one.
package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names.
const (
	HeaderUser      = "X-Outpost-User"
	HeaderIssuer    = "X-Outpost-Issuer"
	HeaderKeyID     = "X-Outpost-Key-Id"
	HeaderScopes    = "X-Outpost-Scopes"
	HeaderRoles     = "X-Outpost-Roles"
	HeaderTier      = "X-Outpost-Tier"
	HeaderTimestamp = "X-Outpost-Timestamp"
	HeaderSignature = "X-Outpost-Signature"
)

// Headers lists every identity header, for stripping.
var Headers = [...]string{HeaderUser, HeaderIssuer, HeaderKeyID, HeaderScopes, HeaderRoles, HeaderTier, HeaderTimestamp, HeaderSignature}

// Identity is an authenticated caller.
type Identity struct {
	User string
	// Issuer is the token's issuer ("iss"); "" for API keys and tokens
	// without one. The same User from two issuers is two callers.
	Issuer string
	KeyID  string
	Scopes []string
	Roles  []string
	Tier   string
}

// HasScope reports whether s is among the identity's scopes.
func (id *Identity) HasScope(s string) bool {
	for _, x := range id.Scopes {
		if x == s {
			return true
		}
	}
	return false
}

// HasRole reports whether role is among the identity's roles.
func (id *Identity) HasRole(role string) bool {
	for _, x := range id.Roles {
		if x == role {
			return true
		}
	}
	return false
}

// Strip removes every identity header from h.
func Strip(h http.Header) {
	for _, k := range Headers {
		h.Del(k)
	}
}

// canonical is the signed text: v2, or v3 for an identity with an issuer.
func canonical(method, path, query string, ts int64, id *Identity) string {
	var b strings.Builder
	b.WriteString(version(id))
	b.WriteByte('\n')
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(path)
	b.WriteByte('\n')
	b.WriteString(query)
	b.WriteByte('\n')
	b.WriteString(strconv.FormatInt(ts, 10))
	for _, s := range []string{id.User, id.KeyID, strings.Join(id.Scopes, " "), strings.Join(id.Roles, " "), id.Tier} {
		b.WriteByte('\n')
		b.WriteString(s)
	}
	if id.Issuer != "" {
		b.WriteByte('\n')
		b.WriteString(id.Issuer)
	}
	return b.String()
}

func version(id *Identity) string {
	if id.Issuer != "" {
		return "v3"
	}
	return "v2"
}

// mac is the signature field's value; the version prefix names the
// canonical form, and is itself covered: a v3 signature never verifies as
// v2 with the issuer header removed.
func mac(secret []byte, id *Identity, msg string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(msg))
	return version(id) + "=" + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Sign strips any identity headers from r and sets signed ones for id. The
// path and query signed are r.URL's as they will be sent upstream.
func Sign(r *http.Request, id *Identity, secret []byte, now time.Time) {
	h := r.Header
	Strip(h)
	ts := now.Unix()
	if id.User != "" {
		h.Set(HeaderUser, id.User)
	}
	if id.Issuer != "" {
		h.Set(HeaderIssuer, id.Issuer)
	}
	if id.KeyID != "" {
		h.Set(HeaderKeyID, id.KeyID)
	}
	if len(id.Scopes) > 0 {
		h.Set(HeaderScopes, strings.Join(id.Scopes, " "))
	}
	if len(id.Roles) > 0 {
		h.Set(HeaderRoles, strings.Join(id.Roles, " "))
	}
	if id.Tier != "" {
		h.Set(HeaderTier, id.Tier)
	}
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, mac(secret, id, canonical(r.Method, r.URL.Path, r.URL.RawQuery, ts, id)))
}

// Verification errors.
var (
	ErrMissing = errors.New("identity: no signed identity")
	ErrForged  = errors.New("identity: bad signature")
	ErrExpired = errors.New("identity: timestamp outside the allowed window")
)

// Verify checks the signed identity headers of r. maxAge bounds how far the
// timestamp may be from now in either direction (clock skew and replay).
func Verify(r *http.Request, secret []byte, now time.Time, maxAge time.Duration) (*Identity, error) {
	h := r.Header
	sig := h.Get(HeaderSignature)
	tsStr := h.Get(HeaderTimestamp)
	if sig == "" || tsStr == "" {
		return nil, ErrMissing
	}
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil {
		return nil, ErrForged
	}
	id := &Identity{
		User:   h.Get(HeaderUser),
		Issuer: h.Get(HeaderIssuer),
		KeyID:  h.Get(HeaderKeyID),
		Scopes: strings.Fields(h.Get(HeaderScopes)),
		Roles:  strings.Fields(h.Get(HeaderRoles)),
		Tier:   h.Get(HeaderTier),
	}
	want := mac(secret, id, canonical(r.Method, r.URL.Path, r.URL.RawQuery, ts, id))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return nil, ErrForged
	}
	d := now.Sub(time.Unix(ts, 0))
	if d < 0 {
		d = -d
	}
	if d > maxAge {
		return nil, ErrExpired
	}
	return id, nil
}
