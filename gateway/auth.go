package gateway

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost/internal/reqinfo"
	"github.com/outpost-edge/outpost/origin/identity"
)

// credKind is the kind of credential a request presented.
type credKind uint8

const (
	credNone credKind = iota
	credAPIKey
	credJWT
	credBad // present but unusable (wrong scheme, several credentials)
)

// extractCredential finds the caller's credential: X-API-Key, or
// Authorization: Bearer with a JWT (three dot-separated parts) or an API
// key. reason explains credBad.
func extractCredential(h http.Header) (kind credKind, cred, reason string) {
	apiKeys := h.Values("X-Api-Key")
	authz := h.Values("Authorization")
	if len(apiKeys)+len(authz) == 0 {
		return credNone, "", ""
	}
	if len(apiKeys)+len(authz) > 1 {
		return credBad, "", "multiple_credentials"
	}
	if len(apiKeys) == 1 {
		return credAPIKey, strings.TrimSpace(apiKeys[0]), ""
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(authz[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return credBad, "", "unsupported_scheme"
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return credBad, "", "malformed"
	}
	if strings.Count(tok, ".") == 2 {
		return credJWT, tok, ""
	}
	return credAPIKey, tok, ""
}

// authenticate establishes who the caller is. It returns a nil identity
// for an anonymous caller on a route that allows one; ok=false means a 401
// was written.
func (rt *route) authenticate(w http.ResponseWriter, r *http.Request, info *reqinfo.Info) (*identity.Identity, credKind, bool) {
	if rt.mode == ModeNone {
		return nil, credNone, true
	}
	kind, cred, reason := extractCredential(r.Header)
	var id *identity.Identity
	switch kind {
	case credNone:
		if rt.mode == ModeOptional {
			return nil, credNone, true
		}
		rt.unauthorized(w, r, info, "missing", "")
		return nil, kind, false
	case credBad:
		rt.unauthorized(w, r, info, reason, "invalid_request")
		return nil, kind, false
	}
	// Credential guessing: an IP that spent its failure budget is refused
	// before any hashing or signature check.
	var ipKey string
	if rt.g.failures != nil {
		ipKey = rt.g.failures.keyPrefix + clientKey(r, info)
		if d := rt.g.st.local.peek(ipKey, rt.g.failures); !d.Allowed {
			rt.m.failRefused.Inc()
			info.Set(reqinfo.FieldAuthFail, "too_many_failures")
			w.Header().Set("Retry-After", strconv.FormatInt(max(ceilSeconds(d.RetryAfter), 1), 10))
			writeError(w, r, http.StatusTooManyRequests, "too_many_auth_failures", "too many failed authentication attempts")
			return nil, kind, false
		}
	}
	switch kind {
	case credAPIKey:
		if !rt.allowKey {
			rt.unauthorized(w, r, info, "credential_not_accepted", "invalid_token")
			return nil, kind, false
		}
		id, reason = rt.g.lookupKey(cred)
	case credJWT:
		if !rt.allowJWT {
			rt.unauthorized(w, r, info, "credential_not_accepted", "invalid_token")
			return nil, kind, false
		}
		var err error
		id, err = rt.g.jwt.verify(r.Context(), cred)
		if err != nil {
			reason = jwtReason(err)
		} else {
			id.Tier = rt.g.tierOf(id.Tier)
		}
	}
	if reason != "" {
		if ipKey != "" {
			rt.g.st.local.allow(ipKey, rt.g.failures)
		}
		rt.unauthorized(w, r, info, reason, "invalid_token")
		return nil, kind, false
	}
	info.Set(reqinfo.FieldUser, id.User)
	if id.Issuer != "" {
		info.Set(reqinfo.FieldIssuer, id.Issuer)
	}
	if id.KeyID != "" {
		info.Set(reqinfo.FieldKeyID, id.KeyID)
	}
	return id, kind, true
}

// unauthorized writes a 401 with an RFC 6750 challenge. The reason goes
// to metrics and the access log; the client sees only the error class.
func (rt *route) unauthorized(w http.ResponseWriter, r *http.Request, info *reqinfo.Info, reason, oauthErr string) {
	rt.m.authFailure(reason)
	info.Set(reqinfo.FieldAuthFail, reason)
	ch := rt.challenge
	msg := "authentication required"
	if oauthErr != "" {
		ch += `, error="` + oauthErr + `"`
		msg = "invalid credentials"
	}
	w.Header().Set("WWW-Authenticate", ch)
	writeError(w, r, http.StatusUnauthorized, "unauthorized", msg)
}

// authorize checks scopes, roles and admin-only. An anonymous caller on a
// route with requirements gets 401 (log in first), not 403.
func (rt *route) authorize(w http.ResponseWriter, r *http.Request, id *identity.Identity) bool {
	if len(rt.scopes) == 0 && len(rt.roles) == 0 && !rt.adminOnly {
		return true
	}
	if id == nil {
		rt.unauthorized(w, r, reqinfo.From(r.Context()), "missing", "")
		return false
	}
	var missing []string
	for _, s := range rt.scopes {
		if !id.HasScope(s) {
			missing = append(missing, s)
		}
	}
	roleOK := len(rt.roles) == 0
	for _, role := range rt.roles {
		if id.HasRole(role) {
			roleOK = true
			break
		}
	}
	adminOK := !rt.adminOnly
	for _, role := range id.Roles {
		if rt.g.adminSet[role] {
			adminOK = true
			break
		}
	}
	if len(missing) == 0 && roleOK && adminOK {
		return true
	}
	rt.m.authzDenied.Inc()
	if len(missing) > 0 {
		w.Header().Set("WWW-Authenticate", rt.challenge+`, error="insufficient_scope", scope="`+strings.Join(rt.scopes, " ")+`"`)
		writeError(w, r, http.StatusForbidden, "forbidden", "missing scope: "+strings.Join(missing, " "))
		return false
	}
	writeError(w, r, http.StatusForbidden, "forbidden", "not permitted for this caller")
	return false
}
