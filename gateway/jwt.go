package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/outpost-edge/outpost/origin/identity"
)

// verifyKey is one JWT verification key bound to exactly one algorithm:
// the binding is what makes HS/RS confusion impossible, because a token's
// `alg` must equal the key's before the key is handed to the library.
type verifyKey struct {
	kid    string
	alg    string
	key    any // []byte (HS256), *rsa.PublicKey, *ecdsa.PublicKey (P-256), ed25519.PublicKey
	issuer string
}

// parseKey turns a configured key into a verifyKey.
func parseKey(k JWTKeyConfig) (verifyKey, error) {
	vk := verifyKey{kid: k.KID, alg: k.Alg, issuer: k.Issuer}
	if !slices.Contains(jwtAlgs, k.Alg) {
		return vk, fmt.Errorf("alg: unknown algorithm %q (want HS256, RS256, ES256, EdDSA)", k.Alg)
	}
	if (k.Secret == "") == (k.PublicKeyPEM == "") {
		return vk, errors.New("exactly one of secret and public_key_pem must be set")
	}
	if k.Alg == "HS256" {
		if k.Secret == "" {
			return vk, errors.New("HS256 needs secret, not public_key_pem")
		}
		if len(k.Secret) < 32 {
			return vk, fmt.Errorf("secret must be at least 32 bytes, got %d", len(k.Secret))
		}
		vk.key = []byte(k.Secret)
		return vk, nil
	}
	if k.PublicKeyPEM == "" {
		return vk, fmt.Errorf("%s needs public_key_pem, not secret", k.Alg)
	}
	block, _ := pem.Decode([]byte(k.PublicKeyPEM))
	if block == nil {
		return vk, errors.New("public_key_pem: no PEM block found")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return vk, fmt.Errorf("public_key_pem: want a PUBLIC KEY block, got %q", block.Type)
	}
	if err != nil {
		return vk, fmt.Errorf("public_key_pem: %v", err)
	}
	vk.key, err = bindKey(k.Alg, pub)
	return vk, err
}

// bindKey checks that pub suits alg and returns it in the form the JWT
// library expects.
func bindKey(alg string, pub any) (any, error) {
	switch alg {
	case "RS256":
		if p, ok := pub.(*rsa.PublicKey); ok {
			if p.N.BitLen() < 2048 {
				return nil, fmt.Errorf("RS256 key must be at least 2048 bits, got %d", p.N.BitLen())
			}
			return p, nil
		}
	case "ES256":
		if p, ok := pub.(*ecdsa.PublicKey); ok {
			if p.Curve != elliptic.P256() {
				return nil, errors.New("ES256 key must be on curve P-256")
			}
			return p, nil
		}
	case "EdDSA":
		if p, ok := pub.(ed25519.PublicKey); ok {
			return p, nil
		}
	}
	return nil, fmt.Errorf("key type %T does not match alg %s", pub, alg)
}

// tokenClaims is the claims convention shared with the origin services:
// sub = user id, scope = space-separated scopes, roles = array, tier.
// Both scope and roles are read in either form (a string or an array):
// issuers differ, and a form mismatch refused every token as malformed.
type tokenClaims struct {
	jwt.RegisteredClaims
	Scope stringList `json:"scope,omitempty"`
	Roles stringList `json:"roles,omitempty"`
	Tier  string     `json:"tier,omitempty"`
}

// stringList accepts a JSON array of strings or a single space-separated
// string (RFC 8693 scope; some issuers emit roles that way, others scope
// as an array).
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = strings.Fields(one)
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// Sentinel causes surfaced by the key function; mapped to failure reasons.
var (
	errUnknownKID  = errors.New("no key for kid")
	errAlgMismatch = errors.New("token alg does not match the key")
	errIssuerKey   = errors.New("key not valid for this issuer")
	errTooLarge    = errors.New("token too large")
	errBadClaim    = errors.New("claim has an invalid value")
)

// jwtVerifier validates bearer JWTs for one config generation.
type jwtVerifier struct {
	parser  *jwt.Parser
	byKID   map[string]verifyKey
	byAlg   map[string][]verifyKey // keys without kid, for tokens without kid
	jwks    []jwksRef
	issuers []string
	maxSize int
	leeway  time.Duration
	now     func() time.Time
	cache   *tokenCache
}

// jwksRef is a key set used by this config, with this config's intervals.
type jwksRef struct {
	set        *jwksSet
	refresh    time.Duration
	minRefresh time.Duration
	issuer     string
}

func newJWTVerifier(c JWTConfig, cache *jwksCache, now func() time.Time) (*jwtVerifier, error) {
	v := &jwtVerifier{
		byKID:   map[string]verifyKey{},
		byAlg:   map[string][]verifyKey{},
		issuers: c.Issuers,
		maxSize: int(c.MaxTokenSize.Int64()),
		leeway:  c.Leeway.D(),
		now:     now,
		cache:   newTokenCache(),
	}
	for _, kc := range c.Keys {
		k, err := parseKey(kc)
		if err != nil {
			return nil, fmt.Errorf("jwt key %q: %w", kc.KID, err)
		}
		if k.kid != "" {
			v.byKID[k.kid] = k
		} else {
			v.byAlg[k.alg] = append(v.byAlg[k.alg], k)
		}
	}
	for _, jc := range c.JWKS {
		v.jwks = append(v.jwks, jwksRef{
			set:        cache.set(jc.URL),
			refresh:    jc.RefreshInterval.D(),
			minRefresh: jc.MinRefreshInterval.D(),
			issuer:     jc.Issuer,
		})
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(jwtAlgs),
		jwt.WithLeeway(c.Leeway.D()),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(now),
	}
	if !c.AllowNoExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if len(c.Audiences) > 0 {
		opts = append(opts, jwt.WithAudience(c.Audiences...))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// enabled reports whether any key source is configured.
func (v *jwtVerifier) enabled() bool {
	return len(v.byKID) > 0 || len(v.byAlg) > 0 || len(v.jwks) > 0
}

// verify validates token and returns the caller's identity (tier not yet
// resolved) or an error whose reason is jwtReason(err).
func (v *jwtVerifier) verify(ctx context.Context, token string) (*identity.Identity, error) {
	if len(token) > v.maxSize {
		return nil, errTooLarge
	}
	now := v.now()
	sum := tokenSum(token)
	if id, ok := v.cache.get(sum, now); ok {
		return id, nil
	}
	var claims tokenClaims
	_, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		return v.key(ctx, t, claims.Issuer)
	})
	if err != nil {
		return nil, err
	}
	if len(v.issuers) > 0 && !slices.Contains(v.issuers, claims.Issuer) {
		return nil, jwt.ErrTokenInvalidIssuer
	}
	if claims.Subject == "" {
		return nil, jwt.ErrTokenRequiredClaimMissing
	}
	if !cleanWord(claims.Subject) || (claims.Tier != "" && !cleanWord(claims.Tier)) ||
		(claims.Issuer != "" && !cleanWord(claims.Issuer)) {
		return nil, errBadClaim
	}
	id := &identity.Identity{
		User:   claims.Subject,
		Issuer: claims.Issuer,
		Tier:   claims.Tier,
	}
	// Scopes and roles travel in headers: words with control characters
	// would make the upstream request invalid (a 502), so they are dropped.
	for _, s := range claims.Scope {
		if cleanWord(s) {
			id.Scopes = append(id.Scopes, s)
		}
	}
	for _, r := range claims.Roles {
		if cleanWord(r) {
			id.Roles = append(id.Roles, r)
		}
	}
	until := now.Add(tokenCacheTTL)
	if claims.ExpiresAt != nil {
		if exp := claims.ExpiresAt.Add(v.leeway); exp.Before(until) {
			until = exp
		}
	}
	v.cache.put(sum, id, until, now)
	return id, nil
}

// key is the jwt.Keyfunc: it finds the key for the token's kid and alg.
// A key is only returned when its bound algorithm equals the token's.
func (v *jwtVerifier) key(ctx context.Context, t *jwt.Token, iss string) (any, error) {
	alg := t.Method.Alg()
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		var set jwt.VerificationKeySet
		for _, k := range v.byAlg[alg] {
			if k.issuer == "" || k.issuer == iss {
				set.Keys = append(set.Keys, k.key)
			}
		}
		if len(set.Keys) == 0 {
			return nil, errUnknownKID
		}
		return set, nil
	}
	if k, ok := v.byKID[kid]; ok {
		return checkKey(k, alg, iss)
	}
	for _, ref := range v.jwks {
		if ref.issuer != "" && ref.issuer != iss {
			continue
		}
		if k, ok := ref.set.lookup(ctx, kid, ref.refresh, ref.minRefresh); ok {
			return checkKey(k, alg, iss)
		}
	}
	return nil, errUnknownKID
}

func checkKey(k verifyKey, alg, iss string) (any, error) {
	if k.alg != alg {
		return nil, errAlgMismatch
	}
	if k.issuer != "" && k.issuer != iss {
		return nil, errIssuerKey
	}
	return k.key, nil
}

// jwtReason maps a verification error to a metric and log label.
func jwtReason(err error) string {
	switch {
	case errors.Is(err, errTooLarge):
		return "too_large"
	case errors.Is(err, errUnknownKID):
		return "unknown_kid"
	case errors.Is(err, errAlgMismatch), errors.Is(err, errIssuerKey):
		return "key_mismatch"
	case errors.Is(err, errBadClaim):
		return "bad_claim"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not_yet_valid"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "bad_audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "bad_issuer"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing_claim"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if strings.Contains(err.Error(), "signing method") {
			return "alg_not_allowed"
		}
		return "bad_signature"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		if strings.Contains(err.Error(), "signing method") {
			return "alg_not_allowed"
		}
		return "unverifiable"
	}
	return "invalid_token"
}

// cleanWord reports whether s can travel in a header as one word: no
// spaces or control characters, at most 256 bytes.
func cleanWord(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}
