package tlsedge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Peer is another authoritative node whose DNS must serve dns-01
// challenge records too.
type Peer struct {
	// Name labels the peer in logs and metrics.
	Name string
	// Admin is the peer's admin API base URL, e.g. https://203.0.113.5:9443.
	Admin string
}

// PeerPush is a TXTStore that writes to the local DNS and pushes the same
// change to every peer's admin API (POST/DELETE /v1/dns/records), so that
// whichever authoritative node the CA asks serves the challenge. Until
// cluster state is shared this is how dns-01 works in a cluster.
//
// AddTXT fails unless every peer acknowledged: a record missing on one
// authoritative node makes validation fail at random, and failing early
// lets certmagic retry. A failed add is rolled back everywhere first.
// RemoveTXT tries every peer and reports the errors, but always removes
// locally first.
type PeerPush struct {
	Local   TXTStore
	Peers   []Peer
	Token   string // bearer token for the peers' admin APIs; never logged
	Client  *http.Client
	Logger  *slog.Logger
	Metrics *Metrics
}

var _ TXTStore = (*PeerPush)(nil)

// recordsPath is the dns package's admin endpoint for runtime records.
const recordsPath = "/v1/dns/records"

// peerRecord is the JSON body of the records endpoint: one RR in zone-file
// presentation format, which the dns admin handler parses with miekg/dns.
type peerRecord struct {
	RR string `json:"rr"`
}

// rollbackTimeout bounds undoing a failed AddTXT. The rollback ignores
// the caller's cancellation: a timed-out add must still be undone.
const rollbackTimeout = 30 * time.Second

// AddTXT implements TXTStore. When a peer does not acknowledge, the add
// is rolled back (locally and on every peer) before the error is
// returned: certmagic only remembers a record whose add succeeded, so its
// clean-up would never remove one left behind.
func (p *PeerPush) AddTXT(ctx context.Context, rec TXTRecord) error {
	if err := p.Local.AddTXT(ctx, rec); err != nil {
		return err
	}
	errs := p.fanout(ctx, http.MethodPost, p.Peers, rec)
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	if rb := p.rollback(ctx, rec, errs); rb != nil {
		return errors.Join(err, fmt.Errorf("rolling back %s: %w", rec.Name, rb))
	}
	return err
}

// rollback undoes a partly failed AddTXT. The record is deleted from
// every peer, since one that timed out may have applied it; only the
// errors of peers that acknowledged the add (and so hold the record) are
// reported.
func (p *PeerPush) rollback(ctx context.Context, rec TXTRecord, addErrs []error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	errs := []error{p.Local.RemoveTXT(ctx, rec)}
	for i, err := range p.fanout(ctx, http.MethodDelete, p.Peers, rec) {
		if addErrs[i] == nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RemoveTXT implements TXTStore.
func (p *PeerPush) RemoveTXT(ctx context.Context, rec TXTRecord) error {
	err := p.Local.RemoveTXT(ctx, rec)
	return errors.Join(err, errors.Join(p.fanout(ctx, http.MethodDelete, p.Peers, rec)...))
}

// ListTXT implements TXTStore with the local view.
func (p *PeerPush) ListTXT(ctx context.Context, zone string) ([]TXTRecord, error) {
	return p.Local.ListTXT(ctx, zone)
}

// fanout sends the change to peers in parallel and returns each peer's
// error (nil when it acknowledged), indexed like peers.
func (p *PeerPush) fanout(ctx context.Context, method string, peers []Peer, rec TXTRecord) []error {
	errs := make([]error, len(peers))
	body, err := json.Marshal(peerRecord{RR: presentTXT(rec)})
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	var wg sync.WaitGroup
	for i, peer := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.send(ctx, method, peer, body); err != nil {
				errs[i] = fmt.Errorf("peer %s: %w", peer.Name, err)
				if p.Metrics != nil {
					p.Metrics.pushFails.WithLabelValues(peer.Name).Inc()
				}
				if p.Logger != nil {
					p.Logger.Warn("dns-01 record push failed", "peer", peer.Name, "method", method, "name", rec.Name, "err", err)
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

func (p *PeerPush) send(ctx context.Context, method string, peer Peer, body []byte) error {
	url := strings.TrimSuffix(peer.Admin, "/") + recordsPath
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.Token)
	}
	client := http.Client{}
	if p.Client != nil {
		client = *p.Client
	}
	// A redirect would carry the token to wherever on the host it points,
	// as a GET that stores nothing; it is an error here.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 && !(method == http.MethodDelete && resp.StatusCode == http.StatusNotFound) {
		return fmt.Errorf("%s %s: %d %s", method, recordsPath, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}

// presentTXT renders a TXT record in zone-file syntax, quoting and
// escaping the text and splitting it into 255-byte strings.
func presentTXT(rec TXTRecord) string {
	var b strings.Builder
	b.WriteString(fqdn(rec.Name))
	fmt.Fprintf(&b, " %d IN TXT", int64(rec.TTL.Seconds()))
	for _, part := range splitTXT(rec.Text) {
		b.WriteString(` "`)
		b.WriteString(escapeTXT(part))
		b.WriteByte('"')
	}
	return b.String()
}
