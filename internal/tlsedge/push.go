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
// lets certmagic retry. RemoveTXT tries every peer and reports the errors,
// but always removes locally first.
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

// AddTXT implements TXTStore.
func (p *PeerPush) AddTXT(ctx context.Context, rec TXTRecord) error {
	if err := p.Local.AddTXT(ctx, rec); err != nil {
		return err
	}
	return p.fanout(ctx, http.MethodPost, rec)
}

// RemoveTXT implements TXTStore.
func (p *PeerPush) RemoveTXT(ctx context.Context, rec TXTRecord) error {
	err := p.Local.RemoveTXT(ctx, rec)
	return errors.Join(err, p.fanout(ctx, http.MethodDelete, rec))
}

// ListTXT implements TXTStore with the local view.
func (p *PeerPush) ListTXT(ctx context.Context, zone string) ([]TXTRecord, error) {
	return p.Local.ListTXT(ctx, zone)
}

func (p *PeerPush) fanout(ctx context.Context, method string, rec TXTRecord) error {
	body, err := json.Marshal(peerRecord{RR: presentTXT(rec)})
	if err != nil {
		return err
	}
	errs := make([]error, len(p.Peers))
	var wg sync.WaitGroup
	for i, peer := range p.Peers {
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
	return errors.Join(errs...)
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
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
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
