package services

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/outpost-edge/outpost/internal/httperr"
	"github.com/outpost-edge/outpost/origin"
	"github.com/outpost-edge/outpost/origin/store"
	"golang.org/x/crypto/bcrypt"
)

// UserView is the public shape of a user.
type UserView struct {
	ID          string    `json:"id"`
	Username    string    `json:"username"`
	DisplayName string    `json:"display_name"`
	Bio         string    `json:"bio"`
	CreatedAt   time.Time `json:"created_at"`
	Followers   int       `json:"followers"`
	Following   int       `json:"following"`
	Tweets      int       `json:"tweets"`
}

// MeView adds what only the user sees about themself.
type MeView struct {
	UserView
	Roles []string `json:"roles"`
	Tier  string   `json:"tier"`
}

// TokenResponse is the answer to signup, login and refresh.
type TokenResponse struct {
	AccessToken  string   `json:"access_token"`
	TokenType    string   `json:"token_type"` // "Bearer"
	ExpiresIn    int64    `json:"expires_in"` // seconds
	Scope        string   `json:"scope"`
	RefreshToken string   `json:"refresh_token,omitempty"`
	User         UserView `json:"user"`
}

func validUsername(s string) bool {
	if len(s) < 3 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// bcrypt reads at most 72 bytes; longer passwords would be silently cut.
const minPassword, maxPassword = 8, 72

func (a *App) userView(ctx context.Context, u store.User) (UserView, error) {
	st, err := a.store.Stats(ctx, u.ID)
	if err != nil {
		return UserView{}, err
	}
	return UserView{ID: u.ID, Username: u.Username, DisplayName: u.DisplayName, Bio: u.Bio, CreatedAt: u.CreatedAt,
		Followers: st.Followers, Following: st.Following, Tweets: st.Tweets}, nil
}

// createUser validates and stores a new account.
func (a *App) createUser(ctx context.Context, username, password, display string, roles []string, tier string) (store.User, error) {
	username = strings.ToLower(strings.TrimSpace(username))
	if !validUsername(username) {
		return store.User{}, errBadInput("username must be 3-20 characters of a-z, 0-9 and _")
	}
	if len(password) < minPassword || len(password) > maxPassword {
		return store.User{}, errBadInput(fmt.Sprintf("password must be %d-%d bytes", minPassword, maxPassword))
	}
	display = strings.TrimSpace(display)
	if display == "" {
		display = username
	}
	if utf8.RuneCountInString(display) > 50 || !utf8.ValidString(display) {
		return store.User{}, errBadInput("display_name must be at most 50 characters")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), a.cfg.BcryptCost)
	if err != nil {
		return store.User{}, err
	}
	return a.store.CreateUser(ctx, store.User{
		Username: username, DisplayName: display, PasswordHash: string(hash),
		Roles: roles, Tier: tier, CreatedAt: a.now().UTC().Truncate(time.Second),
	})
}

// badInput is a validation failure whose text is safe to show the client.
type badInput string

func (e badInput) Error() string { return string(e) }

func errBadInput(msg string) error { return badInput(msg) }

func (a *App) failInput(w http.ResponseWriter, r *http.Request, err error, what string) {
	var bi badInput
	if errors.As(err, &bi) {
		httperr.Write(w, r, http.StatusBadRequest, "bad_request", string(bi))
		return
	}
	a.fail(w, r, err, what)
}

type credentials struct {
	Username    string `json:"username"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name,omitempty"`
}

func (a *App) signup(w http.ResponseWriter, r *http.Request) {
	var in credentials
	if !readJSON(w, r, &in) {
		return
	}
	u, err := a.createUser(r.Context(), in.Username, in.Password, in.DisplayName, []string{"user"}, "free")
	if err != nil {
		a.failInput(w, r, err, "username")
		return
	}
	a.log.Info("user signed up", "user", u.ID)
	a.respondToken(w, r, http.StatusCreated, u)
}

func (a *App) login(w http.ResponseWriter, r *http.Request) {
	var in credentials
	if !readJSON(w, r, &in) {
		return
	}
	u, err := a.store.UserByName(r.Context(), strings.ToLower(strings.TrimSpace(in.Username)))
	hash := a.dummy
	if err == nil {
		hash = []byte(u.PasswordHash)
	} else if !errors.Is(err, store.ErrNotFound) {
		a.fail(w, r, err, "user")
		return
	}
	// Compare even for unknown users so timing does not reveal which
	// usernames exist.
	if bcrypt.CompareHashAndPassword(hash, []byte(in.Password)) != nil || err != nil {
		httperr.Write(w, r, http.StatusUnauthorized, "invalid_credentials", "wrong username or password")
		return
	}
	a.respondToken(w, r, http.StatusOK, u)
}

type refreshBody struct {
	RefreshToken string `json:"refresh_token"`
}

func (a *App) refresh(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Sessions == nil {
		httperr.Write(w, r, http.StatusNotFound, "not_found", "refresh tokens are not enabled on this origin")
		return
	}
	var in refreshBody
	if !readJSON(w, r, &in) {
		return
	}
	sess, err := a.cfg.Sessions.Get(r.Context(), in.RefreshToken)
	if errors.Is(err, origin.ErrSessionNotFound) {
		httperr.Write(w, r, http.StatusUnauthorized, "invalid_refresh_token", "refresh token unknown or expired")
		return
	}
	if err != nil {
		a.fail(w, r, err, "session")
		return
	}
	u, err := a.store.UserByID(r.Context(), sess.UserID)
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	tok, exp, err := a.issueToken(u)
	if err != nil {
		a.fail(w, r, err, "token")
		return
	}
	view, err := a.userView(r.Context(), u)
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	origin.SetPrivate(w.Header())
	writeJSON(w, http.StatusOK, TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(exp / time.Second),
		Scope: DefaultScopes, RefreshToken: in.RefreshToken, User: view})
}

func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Sessions == nil {
		httperr.Write(w, r, http.StatusNotFound, "not_found", "refresh tokens are not enabled on this origin")
		return
	}
	var in refreshBody
	if !readJSON(w, r, &in) {
		return
	}
	if err := a.cfg.Sessions.Delete(r.Context(), in.RefreshToken); err != nil {
		a.fail(w, r, err, "session")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *App) respondToken(w http.ResponseWriter, r *http.Request, status int, u store.User) {
	ctx := r.Context()
	tok, exp, err := a.issueToken(u)
	if err != nil {
		a.fail(w, r, err, "token")
		return
	}
	resp := TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(exp / time.Second), Scope: DefaultScopes}
	if a.cfg.Sessions != nil {
		sess, err := a.cfg.Sessions.Create(ctx, u.ID, map[string]string{"username": u.Username}, a.cfg.RefreshTTL)
		if err != nil {
			a.fail(w, r, err, "session")
			return
		}
		resp.RefreshToken = sess.ID
	}
	if resp.User, err = a.userView(ctx, u); err != nil {
		a.fail(w, r, err, "user")
		return
	}
	origin.SetPrivate(w.Header())
	writeJSON(w, status, resp)
}

// issueToken signs an access token for u: EdDSA with "kid", claims sub,
// iss, aud (one string), exp, iat, nbf, scope (space-separated), roles,
// tier and name (the username).
func (a *App) issueToken(u store.User) (string, time.Duration, error) {
	now := a.now()
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	claims := jwt.MapClaims{
		"sub":   u.ID,
		"iss":   a.cfg.Issuer,
		"aud":   a.cfg.Audience,
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(a.cfg.TokenTTL).Unix(),
		"scope": DefaultScopes,
		"roles": roles,
		"tier":  u.Tier,
		"name":  u.Username,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = a.kid
	s, err := t.SignedString(a.cfg.SigningKey)
	if err != nil {
		return "", 0, fmt.Errorf("services: sign token: %w", err)
	}
	return s, a.cfg.TokenTTL, nil
}

// buildJWKS renders the public key as a JSON Web Key Set (RFC 8037 OKP).
func buildJWKS(pub ed25519.PublicKey, kid string) ([]byte, error) {
	set := map[string]any{"keys": []map[string]string{{
		"kty": "OKP",
		"crv": "Ed25519",
		"x":   base64.RawURLEncoding.EncodeToString(pub),
		"kid": kid,
		"alg": "EdDSA",
		"use": "sig",
	}}}
	return json.Marshal(set)
}

func (a *App) getJWKS(w http.ResponseWriter, r *http.Request) {
	origin.SetCache(w.Header(), origin.Medium)
	origin.SetSurrogateKeys(w.Header(), "jwks")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.jwks)
}

func (a *App) getMe(w http.ResponseWriter, r *http.Request) {
	uid, ok := requireUser(w, r)
	if !ok {
		return
	}
	u, err := a.store.UserByID(r.Context(), uid)
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	view, err := a.userView(r.Context(), u)
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	origin.SetPrivate(w.Header())
	writeJSON(w, http.StatusOK, MeView{UserView: view, Roles: u.Roles, Tier: u.Tier})
}

type profileUpdate struct {
	DisplayName *string `json:"display_name"`
	Bio         *string `json:"bio"`
}

func (a *App) updateMe(w http.ResponseWriter, r *http.Request) {
	uid, ok := requireUser(w, r)
	if !ok {
		return
	}
	var in profileUpdate
	if !readJSON(w, r, &in) {
		return
	}
	var name, bio string
	if in.DisplayName != nil {
		name = strings.TrimSpace(*in.DisplayName)
		if name == "" || utf8.RuneCountInString(name) > 50 || !utf8.ValidString(name) {
			httperr.Write(w, r, http.StatusBadRequest, "bad_request", "display_name must be 1-50 characters")
			return
		}
	}
	if in.Bio != nil {
		bio = strings.TrimSpace(*in.Bio)
		if utf8.RuneCountInString(bio) > 160 || !utf8.ValidString(bio) {
			httperr.Write(w, r, http.StatusBadRequest, "bad_request", "bio must be at most 160 characters")
			return
		}
	}
	// Only the fields sent change, atomically: a concurrent update of the
	// other field is kept.
	u, err := a.store.UpdateUser(r.Context(), uid, func(u *store.User) error {
		if in.DisplayName != nil {
			u.DisplayName = name
		}
		if in.Bio != nil {
			u.Bio = bio
		}
		return nil
	})
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	a.purge(r.Context(), tagUser(u.ID))
	a.getMe(w, r)
}

// lookupName resolves the {name} path value, writing a 404 if unknown.
func (a *App) lookupName(w http.ResponseWriter, r *http.Request) (store.User, bool) {
	name := strings.ToLower(r.PathValue("name"))
	if !validUsername(name) {
		httperr.Write(w, r, http.StatusNotFound, "not_found", "user not found")
		return store.User{}, false
	}
	u, err := a.store.UserByName(r.Context(), name)
	if err != nil {
		a.fail(w, r, err, "user")
		return store.User{}, false
	}
	return u, true
}

func (a *App) getProfile(w http.ResponseWriter, r *http.Request) {
	u, ok := a.lookupName(w, r)
	if !ok {
		return
	}
	view, err := a.userView(r.Context(), u)
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	origin.SetCache(w.Header(), origin.Medium)
	origin.SetSurrogateKeys(w.Header(), "users", tagUser(u.ID))
	writeJSON(w, http.StatusOK, view)
}

// UserRef is a user named inside another object.
type UserRef struct {
	ID          string `json:"id"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
}

// userRefs resolves user ids to refs, memoising within one response.
type userRefs struct {
	a    *App
	seen map[string]UserRef
}

func (a *App) refs() *userRefs { return &userRefs{a: a, seen: map[string]UserRef{}} }

func (u *userRefs) get(ctx context.Context, id string) (UserRef, error) {
	if ref, ok := u.seen[id]; ok {
		return ref, nil
	}
	usr, err := u.a.store.UserByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		// Tolerate a dangling reference rather than failing a whole list.
		ref := UserRef{ID: id, Username: "", DisplayName: "(deleted)"}
		u.seen[id] = ref
		return ref, nil
	}
	if err != nil {
		return UserRef{}, err
	}
	ref := UserRef{ID: usr.ID, Username: usr.Username, DisplayName: usr.DisplayName}
	u.seen[id] = ref
	return ref, nil
}

func (a *App) listRelations(w http.ResponseWriter, r *http.Request, following bool) {
	u, ok := a.lookupName(w, r)
	if !ok {
		return
	}
	list := a.store.Followers
	if following {
		list = a.store.Following
	}
	ids, err := list(r.Context(), u.ID)
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	refs := a.refs()
	out := make([]UserRef, 0, len(ids))
	for _, id := range ids {
		ref, err := refs.get(r.Context(), id)
		if err != nil {
			a.fail(w, r, err, "user")
			return
		}
		out = append(out, ref)
	}
	origin.SetCache(w.Header(), origin.Short)
	origin.SetSurrogateKeys(w.Header(), "users", tagUser(u.ID))
	writeJSON(w, http.StatusOK, map[string]any{"user": u.Username, "users": out})
}

func (a *App) listFollowers(w http.ResponseWriter, r *http.Request) { a.listRelations(w, r, false) }
func (a *App) listFollowing(w http.ResponseWriter, r *http.Request) { a.listRelations(w, r, true) }

// doFollow records the follow, notifies the followee the first time, and
// invalidates what changed: the follower's timeline (new authors) and both
// profiles' counters at the edge.
func (a *App) doFollow(ctx context.Context, follower, followee string) (bool, error) {
	created, err := a.store.Follow(ctx, follower, followee)
	if err != nil || !created {
		return created, err
	}
	if _, err := a.store.AddNotification(ctx, store.Notification{
		UserID: followee, Kind: store.KindFollow, ActorID: follower, CreatedAt: a.now().UTC(),
	}); err != nil {
		return true, err
	}
	a.invalidate(ctx, timelineKey(follower))
	a.purge(ctx, tagUser(follower), tagUser(followee))
	return true, nil
}

func (a *App) follow(w http.ResponseWriter, r *http.Request) {
	uid, ok := requireUser(w, r)
	if !ok {
		return
	}
	target, ok := a.lookupName(w, r)
	if !ok {
		return
	}
	if target.ID == uid {
		httperr.Write(w, r, http.StatusBadRequest, "bad_request", "you cannot follow yourself")
		return
	}
	created, err := a.doFollow(r.Context(), uid, target.ID)
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	origin.SetPrivate(w.Header())
	writeJSON(w, http.StatusOK, map[string]any{"following": true, "user": target.Username, "changed": created})
}

func (a *App) unfollow(w http.ResponseWriter, r *http.Request) {
	uid, ok := requireUser(w, r)
	if !ok {
		return
	}
	target, ok := a.lookupName(w, r)
	if !ok {
		return
	}
	removed, err := a.store.Unfollow(r.Context(), uid, target.ID)
	if err != nil {
		a.fail(w, r, err, "user")
		return
	}
	if removed {
		a.invalidate(r.Context(), timelineKey(uid))
		a.purge(r.Context(), tagUser(uid), tagUser(target.ID))
	}
	origin.SetPrivate(w.Header())
	writeJSON(w, http.StatusOK, map[string]any{"following": false, "user": target.Username, "changed": removed})
}
