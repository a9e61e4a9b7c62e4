// Package tlsedge terminates TLS at the edge: certificates managed by
// certmagic (ACME with HTTP-01, TLS-ALPN-01 and DNS-01 answered by
// Outpost's own DNS, or a local internal CA for development), on-demand
// issuance behind an allowlist or ask endpoint, HTTP/2 and HTTP/3, the
// port-80 redirect with ACME HTTP-01 answers, HSTS and Alt-Svc headers, and
// the admin listing of certificates.
//
// A Manager is long-lived: create it once per process, Start it, hand its
// TLSConfig to the HTTPS listener and its handlers to the node wiring.
package tlsedge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are the Manager's dependencies.
type Options struct {
	// Logger receives the manager's and certmagic's logs. Default: discard.
	Logger *slog.Logger
	// Registerer registers metrics when Metrics is nil. May be nil.
	Registerer prometheus.Registerer
	// Metrics, when set, is used instead of registering new collectors.
	Metrics *Metrics
	// DataDir is the node's data directory; certificates live in
	// DataDir/tls unless Config.Storage says otherwise.
	DataDir string
	// TXT publishes dns-01 challenge records on this node's DNS. Without
	// it dns-01 (and so wildcard names) is unavailable.
	TXT TXTStore
	// Peers are the other authoritative nodes; dns-01 records are pushed
	// to each over its admin API (see PeerPush). Optional.
	Peers []Peer
	// PeerToken is the bearer token for the peers' admin APIs. Secret.
	PeerToken string
	// Storage replaces the file storage (e.g. shared storage for a
	// cluster). Optional.
	Storage certmagic.Storage
	// HTTPClient is used for the on-demand ask endpoint and peer pushes.
	// Default: a client with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock of the internal CA. Default time.Now.
	Now func() time.Time
	// Rand is the internal CA's randomness. Default crypto/rand.
	Rand io.Reader
}

// Manager owns certificate management and the TLS-facing handlers.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	metrics  *Metrics
	src      certSource
	ca       *internalCA // internal mode only
	rootPath string      // internal mode: where the root PEM was exported
	policy   *onDemandPolicy
	tlsConf  *tls.Config
	altSvc   string // "" when HTTP/3 is off or the HTTPS port is not known yet
	hsts     string // "" when the default HSTS policy is off
	https    string // port suffix for redirects: "" for 443, else ":port"; see SetHTTPSAddr

	mu     sync.Mutex
	names  []string               // managed names; mu guards names, status and stop
	status map[string]*nameStatus // per name, including on-demand ones
	stop   context.CancelFunc
}

// nameStatus is what the admin API reports beyond the certificate itself.
type nameStatus struct {
	lastObtained time.Time
	lastError    string
	lastErrorAt  time.Time
	// lastErrorRenewal: lastError came from a renewal.
	lastErrorRenewal bool
	renewals         int
}

// New builds a Manager. cfg must have had SetDefaults and Validate.
func New(cfg Config, opts Options) (*Manager, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "tlsedge")
	m := &Manager{cfg: cfg, log: log, metrics: opts.Metrics, status: map[string]*nameStatus{}, names: slices.Clone(cfg.Names)}
	if m.metrics == nil {
		m.metrics = NewMetrics(opts.Registerer)
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}

	if cfg.Storage == "" && opts.DataDir == "" && opts.Storage == nil {
		return nil, errors.New("tlsedge: no storage: set tls.storage or the data directory")
	}
	storageDir := cfg.StorageDir(opts.DataDir)
	storage := opts.Storage
	if storage == nil {
		storage = &certmagic.FileStorage{Path: storageDir}
	}

	p := magicParams{cfg: &m.cfg, storage: storage, zlog: newZapLogger(log), onEvent: m.onEvent}
	if cfg.OnDemand.Enabled {
		m.policy = newOnDemandPolicy(cfg.OnDemand, client)
		p.decision = m.decide
	}
	if cfg.Mode == ModeInternal {
		ca, err := loadOrCreateCA(filepath.Join(storageDir, "internal-ca"), cfg.Internal.RootLifetime.D(), cfg.Internal.LeafLifetime.D(), now, rnd)
		if err != nil {
			return nil, err
		}
		m.ca, p.internal = ca, ca
		m.rootPath = filepath.Join(storageDir, "internal-ca", "root.pem")
		if cfg.Internal.RootExport != "" {
			if err := writeFileAtomic(cfg.Internal.RootExport, ca.rootPEM, 0o644); err != nil {
				return nil, fmt.Errorf("tlsedge: exporting internal root: %w", err)
			}
			m.rootPath = cfg.Internal.RootExport
		}
	}
	if opts.TXT != nil {
		var store TXTStore = opts.TXT
		if len(opts.Peers) > 0 {
			store = &PeerPush{Local: opts.TXT, Peers: opts.Peers, Token: opts.PeerToken, Client: client, Logger: log, Metrics: m.metrics}
		}
		p.dnsProv = &LibDNS{Store: store}
	}
	src, err := newMagicSource(p)
	if err != nil {
		return nil, fmt.Errorf("tlsedge: %w", err)
	}
	m.src = src
	certs := m.Certificates
	m.metrics.expiry.src.Store(&certs)
	m.tlsConf = m.buildTLSConfig()
	if cfg.HSTS.Enabled {
		m.hsts = cfg.HSTS.HeaderValue()
	}
	if _, port, err := net.SplitHostPort(cfg.Listen); err == nil {
		if p, err := strconv.Atoi(port); err == nil && p != 0 {
			m.setHTTPSPort(p)
		}
	}
	return m, nil
}

// SetHTTPSAddr tells the manager where the HTTPS listener is bound, so
// that Alt-Svc and the port-80 redirect name the real port when
// tls.listen asks for port 0 (until then neither names one: no Alt-Svc,
// redirects to 443). Call it before Headers and before HTTPHandler
// serves requests.
func (m *Manager) SetHTTPSAddr(addr net.Addr) {
	if a, ok := addr.(*net.TCPAddr); ok && a.Port != 0 {
		m.setHTTPSPort(a.Port)
	}
}

func (m *Manager) setHTTPSPort(port int) {
	if m.cfg.http3On() {
		m.altSvc = altSvcValue(port, m.cfg.AltSvcMaxAge.D())
	}
	m.https = ""
	if port != 443 {
		m.https = ":" + strconv.Itoa(port)
	}
}

// Start begins managing the configured names. In internal mode the
// certificates are issued before Start returns; in ACME mode they are
// obtained in the background (the listeners must be up to answer
// challenges), and Certificates reports progress and errors.
func (m *Manager) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.mu.Lock()
	m.stop = cancel
	names := slices.Clone(m.names)
	m.mu.Unlock()
	if len(names) == 0 {
		return nil
	}
	return m.src.Manage(ctx, names, m.cfg.Mode == ModeInternal)
}

// SetNames applies a reloaded tls.names: added names are managed (in the
// background in ACME mode), removed ones are no longer renewed and leave
// the cache. Everything else in the tls section takes effect on restart.
func (m *Manager) SetNames(ctx context.Context, names []string) error {
	m.mu.Lock()
	var added, removed []string
	for _, n := range names {
		if !slices.Contains(m.names, n) {
			added = append(added, n)
		}
	}
	for _, n := range m.names {
		if !slices.Contains(names, n) {
			removed = append(removed, n)
			delete(m.status, n)
		}
	}
	m.names = slices.Clone(names)
	m.mu.Unlock()
	if len(removed) > 0 {
		m.src.Unmanage(removed)
		m.log.Info("certificate names removed", "names", removed)
	}
	if len(added) == 0 {
		return nil
	}
	m.log.Info("certificate names added", "names", added)
	return m.src.Manage(context.WithoutCancel(ctx), added, m.cfg.Mode == ModeInternal)
}

// ManageSync obtains (or loads) certificates for names and waits for
// them; for tests, tools and names added at run time.
func (m *Manager) ManageSync(ctx context.Context, names []string) error {
	return m.src.Manage(ctx, names, true)
}

// Stop ends background renewal. Certificates stay in storage.
func (m *Manager) Stop() {
	m.mu.Lock()
	if m.stop != nil {
		m.stop()
	}
	m.mu.Unlock()
	m.src.Stop()
}

// RootPath is the internal CA's exported root PEM file ("" in ACME mode).
func (m *Manager) RootPath() string { return m.rootPath }

// RootPEM is the internal CA's root certificate (nil in ACME mode).
func (m *Manager) RootPEM() []byte {
	if m.ca == nil {
		return nil
	}
	return slices.Clone(m.ca.rootPEM)
}

// TLSConfig is the configuration for HTTPS listeners: TLS 1.2 and 1.3
// only, AEAD suites with forward secrecy, ALPN h2 and http/1.1 (plus
// acme-tls/1 for TLS-ALPN-01). Each call returns a fresh clone.
func (m *Manager) TLSConfig() *tls.Config { return m.tlsConf.Clone() }

func (m *Manager) buildTLSConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if m.cfg.Mode == ModeACME {
		protos = append(protos, acmez.ACMETLS1Protocol)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// TLS 1.3 suites are not configurable and all modern; these are
		// the TLS 1.2 ones worth keeping: ECDHE for forward secrecy,
		// AEAD only (no CBC, no RSA key exchange).
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos:     protos,
		GetCertificate: m.src.GetCertificate,
	}
}

// decide is certmagic's on-demand DecisionFunc.
func (m *Manager) decide(ctx context.Context, name string) error {
	err := m.policy.decide(ctx, name)
	if err != nil {
		m.metrics.onDemand.WithLabelValues("denied").Inc()
		m.log.Debug("on-demand certificate refused", "name", name, "err", err)
		return err
	}
	m.metrics.onDemand.WithLabelValues("allowed").Inc()
	return nil
}

// onEvent records certmagic's certificate events for the admin API and
// metrics. It must return quickly: certmagic calls it synchronously.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	if event == "cached_managed_cert" {
		// A certificate loaded from storage (at start, or at a handshake
		// for an on-demand name): list its names.
		sans, _ := data["sans"].([]string)
		m.mu.Lock()
		for _, n := range sans {
			m.statusLocked(n)
		}
		m.mu.Unlock()
		return nil
	}
	name, _ := data["identifier"].(string)
	if name == "" {
		return nil
	}
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		m.metrics.obtained.WithLabelValues(strconv.FormatBool(renewal)).Inc()
		m.mu.Lock()
		st := m.statusLocked(name)
		st.lastObtained = time.Now()
		if renewal {
			st.renewals++
		}
		m.mu.Unlock()
		m.log.Info("certificate obtained", "name", name, "renewal", renewal)
	case "cert_failed":
		m.metrics.failed.WithLabelValues(strconv.FormatBool(renewal)).Inc()
		msg := "unknown error"
		if err, ok := data["error"].(error); ok && err != nil {
			msg = err.Error()
		}
		m.mu.Lock()
		st := m.statusLocked(name)
		st.lastError, st.lastErrorAt, st.lastErrorRenewal = msg, time.Now(), renewal
		m.mu.Unlock()
		m.log.Warn("certificate order failed", "name", name, "renewal", renewal, "err", msg)
	}
	return nil
}

func (m *Manager) statusLocked(name string) *nameStatus {
	st := m.status[name]
	if st == nil {
		st = &nameStatus{}
		m.status[name] = st
	}
	return st
}

// altSvcValue advertises HTTP/3 on the HTTPS listener's port (HTTP/3
// listens on the same port number over UDP).
func altSvcValue(port int, maxAge time.Duration) string {
	return `h3=":` + strconv.Itoa(port) + `"; ma=` + strconv.FormatInt(int64(maxAge/time.Second), 10)
}
