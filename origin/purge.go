package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// PurgeRequest is the body of the admin API's POST /v1/purge. Exactly one
// of URLs, Prefixes, Tags or All is normally set; Soft marks entries stale
// (served while revalidating) instead of deleting them.
type PurgeRequest struct {
	URLs     []string `json:"urls,omitempty"`
	Prefixes []string `json:"prefixes,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	All      bool     `json:"all,omitempty"`
	Soft     bool     `json:"soft,omitempty"`
}

func (p PurgeRequest) empty() bool {
	return len(p.URLs) == 0 && len(p.Prefixes) == 0 && len(p.Tags) == 0 && !p.All
}

// Purger invalidates edge-cached responses. Services call it after a write.
type Purger interface {
	Purge(ctx context.Context, req PurgeRequest) error
}

// PurgeClient calls an Outpost admin API's POST /v1/purge with a bearer
// token. It is safe for concurrent use.
type PurgeClient struct {
	endpoint string
	token    string
	client   *http.Client
}

var _ Purger = (*PurgeClient)(nil)

// DefaultPurgeTimeout bounds one purge call when the caller's context has
// no deadline: a write must not hang on an unreachable admin API.
const DefaultPurgeTimeout = 5 * time.Second

// NewPurgeClient returns a client for the admin API at adminURL (for
// example "http://127.0.0.1:9090"). client nil means a client with
// DefaultPurgeTimeout.
func NewPurgeClient(adminURL, token string, client *http.Client) (*PurgeClient, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("origin: admin URL %q: want http(s)://host[:port]", adminURL)
	}
	if client == nil {
		client = &http.Client{Timeout: DefaultPurgeTimeout}
	}
	return &PurgeClient{endpoint: strings.TrimRight(u.String(), "/") + "/v1/purge", token: token, client: client}, nil
}

// PurgeError is a non-2xx answer from the admin API.
type PurgeError struct {
	Status  int
	Code    string // the admin API's error code, when it sent the JSON error shape
	Message string
}

func (e *PurgeError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("origin: purge: admin API answered %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("origin: purge: admin API answered %d", e.Status)
}

// Purge sends req. An empty request is a no-op.
func (c *PurgeClient) Purge(ctx context.Context, req PurgeRequest) error {
	if req.empty() {
		return nil
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("origin: purge: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("origin: purge: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.client.Do(hr)
	if err != nil {
		// The error text names the URL but never the token.
		return fmt.Errorf("origin: purge: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	pe := &PurgeError{Status: resp.StatusCode}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &eb) == nil {
		pe.Code, pe.Message = eb.Error.Code, eb.Error.Message
	}
	return pe
}

// IsPurgeStatus reports whether err is a PurgeError with the given status.
func IsPurgeStatus(err error, status int) bool {
	var pe *PurgeError
	return errors.As(err, &pe) && pe.Status == status
}
