package tlsedge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A peer admin URL that redirects is not followed: Go's client would send
// the admin token on to whatever port of the host the redirect names (as
// a GET, the record left behind), and a 200 page there would read as the
// peer holding the challenge record.
func TestPeerPushDoesNotFollowRedirects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	local, _ := startOutpostDNS(t)
	var leaked atomic.Int32
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
	}))
	defer page.Close()
	redirect := httptest.NewServer(http.RedirectHandler(page.URL+"/v1/dns/records", http.StatusFound))
	defer redirect.Close()
	push := &PeerPush{
		Local:   RecordServerTXT(local),
		Peers:   []Peer{{Name: "p", Admin: redirect.URL}},
		Token:   "s3cret-peer-token",
		Client:  &http.Client{Timeout: 5 * time.Second},
		Metrics: NewMetrics(nil),
	}
	err := push.AddTXT(ctx, TXTRecord{Name: "_acme-challenge.example.test.", Text: "x", TTL: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "302") {
		t.Errorf("AddTXT = %v, want the redirect reported", err)
	}
	if leaked.Load() != 0 {
		t.Errorf("the token reached the redirect's target %d times", leaked.Load())
	}
}
