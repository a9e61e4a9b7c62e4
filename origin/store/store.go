// Package store holds the data of the example origin services (users,
// follows, tweets, notifications, media) behind one interface, so that
// service instances stay stateless: every instance given the same Store
// serves the same data.
//
// Bolt is the embedded default: one file, one *bolt.DB, which several
// instances in one process may share (bbolt locks the file, so two
// processes cannot). Redis serves instances spread over processes or hosts.
package store

import (
	"context"
	"errors"
	"slices"
	"time"
)

// Errors shared by every implementation.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
)

// User is an account. PasswordHash is never rendered by the services.
type User struct {
	ID           string    `json:"id"`
	Username     string    `json:"username"` // lower case, unique
	DisplayName  string    `json:"display_name"`
	Bio          string    `json:"bio"`
	PasswordHash string    `json:"password_hash"`
	Roles        []string  `json:"roles"`
	Tier         string    `json:"tier"`
	CreatedAt    time.Time `json:"created_at"`
}

// Tweet is a short post. IDs are decimal sequence numbers, so a larger id
// is a newer tweet across all authors.
type Tweet struct {
	ID        string    `json:"id"`
	AuthorID  string    `json:"author_id"`
	Text      string    `json:"text"`
	Media     []string  `json:"media,omitempty"`    // /static/media/... URLs
	Mentions  []string  `json:"mentions,omitempty"` // usernames (they never change)
	CreatedAt time.Time `json:"created_at"`
}

// Notification kinds.
const (
	KindFollow  = "follow"
	KindMention = "mention"
)

// Notification tells UserID that ActorID followed them or mentioned them
// in TweetID.
type Notification struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Kind      string    `json:"kind"`
	ActorID   string    `json:"actor_id"`
	TweetID   string    `json:"tweet_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Media describes an uploaded file, named by the SHA-256 of its content
// plus an extension ("<hex>.png").
type Media struct {
	Name        string    `json:"name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	OwnerID     string    `json:"owner_id"`
	CreatedAt   time.Time `json:"created_at"`
}

// Stats are a user's counters.
type Stats struct {
	Followers int `json:"followers"`
	Following int `json:"following"`
	Tweets    int `json:"tweets"`
}

// Store is the services' database. Implementations are safe for concurrent
// use by several service instances; each method is atomic on its own.
type Store interface {
	// CreateUser assigns u.ID and stores u; ErrExists if the username is taken.
	CreateUser(ctx context.Context, u User) (User, error)
	// UpdateUser applies change to the stored user id atomically and
	// returns the result: two concurrent updates never lose each other's
	// fields. An error from change aborts the update and is returned. The
	// id and username cannot change.
	UpdateUser(ctx context.Context, id string, change func(*User) error) (User, error)
	UserByID(ctx context.Context, id string) (User, error)
	UserByName(ctx context.Context, username string) (User, error)
	Stats(ctx context.Context, userID string) (Stats, error)

	// Follow makes follower follow followee; false if it already did.
	Follow(ctx context.Context, follower, followee string) (bool, error)
	// Unfollow undoes Follow; false if follower did not follow followee.
	Unfollow(ctx context.Context, follower, followee string) (bool, error)
	// Followers and Following list user ids.
	Followers(ctx context.Context, userID string) ([]string, error)
	Following(ctx context.Context, userID string) ([]string, error)

	// CreateTweet assigns t.ID and stores t.
	CreateTweet(ctx context.Context, t Tweet) (Tweet, error)
	Tweet(ctx context.Context, id string) (Tweet, error)
	DeleteTweet(ctx context.Context, id string) error
	// TweetsByUser lists a user's tweets newest first, at most limit.
	TweetsByUser(ctx context.Context, userID string, limit int) ([]Tweet, error)

	// AddNotification assigns n.ID and stores n.
	AddNotification(ctx context.Context, n Notification) (Notification, error)
	// Notifications lists a user's notifications newest first, at most limit.
	Notifications(ctx context.Context, userID string, limit int) ([]Notification, error)

	// PutMedia stores a file under m.Name; false if it was already there
	// (content addressing makes a re-upload a no-op).
	PutMedia(ctx context.Context, m Media, data []byte) (bool, error)
	Media(ctx context.Context, name string) (Media, []byte, error)
}

// applyChange runs an UpdateUser change on a copy of old, keeping the
// fields a change may not touch.
func applyChange(old User, change func(*User) error) (User, error) {
	u := old
	u.Roles = slices.Clone(old.Roles)
	if err := change(&u); err != nil {
		return User{}, changeError{err}
	}
	u.ID, u.Username = old.ID, old.Username
	return u, nil
}

// changeError carries an UpdateUser change's own error through the
// transaction, to be returned as the change returned it.
type changeError struct{ err error }

func (e changeError) Error() string { return e.err.Error() }
func (e changeError) Unwrap() error { return e.err }
