package tlsedge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

// certSource is what the Manager needs from the certificate engine. It
// keeps certmagic behind one seam: the rest of the package (listeners,
// handlers, the admin API) never touches a certmagic type.
type certSource interface {
	// GetCertificate answers a TLS handshake, including acme-tls/1.
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// HandleHTTPChallenge answers an ACME HTTP-01 request and reports
	// whether it did.
	HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool
	// Manage starts managing names; sync waits for the certificates.
	Manage(ctx context.Context, names []string, sync bool) error
	// Unmanage stops maintaining names and drops them from the cache.
	Unmanage(names []string)
	// Lookup returns the cached certificates that serve name.
	Lookup(name string) []certView
	// Stop ends background maintenance.
	Stop()
}

// certView is a read-only summary of one cached certificate.
type certView struct {
	Leaf    *x509.Certificate
	Names   []string
	Managed bool
}

// magicSource is the certmagic-backed certSource. It holds up to two
// certmagic configs sharing one cache: primary (HTTP-01/TLS-ALPN-01, or
// the internal CA) answers handshakes and on-demand names; dns (dns-01
// only) manages wildcard names, since certmagic makes a DNS solver
// exclusive per issuer.
type magicSource struct {
	cache    *certmagic.Cache
	primary  *certmagic.Config
	dns      *certmagic.Config
	acmeIss  *certmagic.ACMEIssuer // primary's ACME issuer; nil in internal mode
	dnsFirst bool                  // dns-01 is the only challenge: dns manages every name
	log      *zap.Logger
}

var _ certSource = (*magicSource)(nil)

// magicParams is everything newMagicSource needs from the Manager.
type magicParams struct {
	cfg      *Config
	storage  certmagic.Storage
	zlog     *zap.Logger
	onEvent  func(ctx context.Context, event string, data map[string]any) error
	decision func(ctx context.Context, name string) error // nil: no on-demand
	internal certmagic.Issuer                             // set in internal mode
	dnsProv  certmagic.DNSProvider                        // nil: dns-01 unavailable
}

func newMagicSource(p magicParams) (*magicSource, error) {
	s := &magicSource{log: p.zlog}
	s.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) {
			return s.configFor(c.Names), nil
		},
		RenewCheckInterval: p.cfg.RenewCheckInterval.D(),
		OCSPCheckInterval:  time.Hour,
		Logger:             p.zlog,
	})
	template := certmagic.Config{
		RenewalWindowRatio: p.cfg.RenewalWindowRatio,
		DefaultServerName:  p.cfg.DefaultSNI,
		// Clients such as wrk send the IP address they dialed as SNI;
		// like nginx's default server, answer them with the default name's
		// certificate. Refused on-demand names still fail: certmagic
		// checks the decision before falling back.
		FallbackServerName: p.cfg.DefaultSNI,
		OnEvent:            p.onEvent,
		// Only the events onEvent reads: certmagic then skips building
		// the per-handshake tls_get_certificate event entirely.
		ShouldEmitFunc: func(event string) bool {
			switch event {
			case "cert_obtained", "cert_failed", "cached_managed_cert":
				return true
			}
			return false
		},
		Storage: p.storage,
		Logger:  p.zlog,
	}
	newCfg := func() *certmagic.Config {
		c := certmagic.New(s.cache, template)
		if p.decision != nil {
			c.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: p.decision}
		}
		return c
	}

	if p.cfg.Mode == ModeInternal {
		s.primary = newCfg()
		s.primary.Issuers = []certmagic.Issuer{p.internal}
		return s, nil
	}

	a := &p.cfg.ACME
	enabled := map[string]bool{}
	for _, c := range a.Challenges {
		enabled[c] = true
	}
	// Without a port-80 listener nothing could answer HTTP-01, and
	// certmagic would bind port 80 itself: leave the challenge out.
	if p.cfg.HTTPListen == "off" {
		enabled[ChallengeHTTP01] = false
	}
	base, err := acmeTemplate(p.cfg, p.zlog)
	if err != nil {
		s.cache.Stop()
		return nil, err
	}
	if enabled[ChallengeHTTP01] || enabled[ChallengeTLSALPN01] {
		s.primary = newCfg()
		t := base
		t.DisableHTTPChallenge = !enabled[ChallengeHTTP01]
		t.DisableTLSALPNChallenge = !enabled[ChallengeTLSALPN01]
		s.acmeIss = certmagic.NewACMEIssuer(s.primary, t)
		s.primary.Issuers = []certmagic.Issuer{s.acmeIss}
	}
	if enabled[ChallengeDNS01] && p.dnsProv != nil {
		s.dns = newCfg()
		t := base
		t.DNS01Solver = &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
			DNSProvider:        p.dnsProv,
			TTL:                a.DNS01.TTL.D(),
			PropagationTimeout: propagationTimeout(a.DNS01.PropagationTimeout.D()),
			Resolvers:          a.DNS01.Resolvers,
			Logger:             p.zlog,
		}}
		iss := certmagic.NewACMEIssuer(s.dns, t)
		s.dns.Issuers = []certmagic.Issuer{iss}
		if s.primary == nil {
			s.primary, s.acmeIss, s.dnsFirst = s.dns, iss, true
		}
	}
	if s.primary == nil {
		s.cache.Stop()
		return nil, errors.New("dns-01 is the only challenge enabled but no DNS record store was given (Options.TXT)")
	}
	return s, nil
}

// propagationTimeout maps the config value to certmagic's: negative skips
// the check (certmagic's -1).
func propagationTimeout(d time.Duration) time.Duration {
	if d < 0 {
		return -1
	}
	return d
}

// acmeTemplate builds the ACME issuer settings shared by both configs.
func acmeTemplate(cfg *Config, zlog *zap.Logger) (certmagic.ACMEIssuer, error) {
	a := &cfg.ACME
	t := certmagic.ACMEIssuer{
		CA:                a.Directory,
		TestCA:            a.Directory,
		Email:             a.Email,
		Agreed:            true,
		CertObtainTimeout: a.Timeout.D(),
		Logger:            zlog,
	}
	if a.EAB != nil {
		t.ExternalAccount = &acme.EAB{KeyID: a.EAB.KeyID, MACKey: a.EAB.MACKey}
	}
	if a.CARoot != "" {
		pemBytes, err := os.ReadFile(a.CARoot)
		if err != nil {
			return t, fmt.Errorf("acme.ca_root: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return t, fmt.Errorf("acme.ca_root: %s holds no PEM certificate", a.CARoot)
		}
		t.TrustedRoots = pool
	}
	// Challenges are answered by the node's own listeners. Pointing the
	// solvers at those addresses makes certmagic find them busy and trust
	// them to answer, instead of binding the standard ports itself.
	if host, port, err := net.SplitHostPort(cfg.Listen); err == nil {
		t.ListenHost = host
		t.AltTLSALPNPort, _ = strconv.Atoi(port)
	}
	if _, port, err := net.SplitHostPort(cfg.HTTPListen); err == nil {
		t.AltHTTPPort, _ = strconv.Atoi(port)
	}
	return t, nil
}

// configFor picks the certmagic config that manages a certificate with
// these names: wildcards need dns-01.
func (s *magicSource) configFor(names []string) *certmagic.Config {
	if s.dns != nil {
		for _, n := range names {
			if strings.HasPrefix(n, "*.") {
				return s.dns
			}
		}
	}
	return s.primary
}

func (s *magicSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.primary.GetCertificate(hello)
}

func (s *magicSource) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	if s.acmeIss == nil {
		return false
	}
	return s.acmeIss.HandleHTTPChallenge(w, r)
}

func (s *magicSource) Manage(ctx context.Context, names []string, sync bool) error {
	var wild, plain []string
	for _, n := range names {
		if strings.HasPrefix(n, "*.") || s.dnsFirst {
			wild = append(wild, n)
		} else {
			plain = append(plain, n)
		}
	}
	if len(wild) > 0 && s.dns == nil && s.primary.Issuers[0].IssuerKey() != internalIssuerKey {
		return fmt.Errorf("wildcard names %v need dns-01 and a DNS record store", wild)
	}
	manage := func(c *certmagic.Config, ns []string) error {
		if len(ns) == 0 {
			return nil
		}
		for _, n := range ns {
			setAsideDamaged(ctx, c, n, s.log)
		}
		if sync {
			return c.ManageSync(ctx, ns)
		}
		return c.ManageAsync(ctx, ns)
	}
	if s.dns == nil {
		return manage(s.primary, append(plain, wild...))
	}
	return errors.Join(manage(s.primary, plain), manage(s.dns, wild))
}

func (s *magicSource) Lookup(name string) []certView {
	certs := s.cache.AllMatchingCertificates(name)
	out := make([]certView, 0, len(certs))
	for _, c := range certs {
		if c.Leaf == nil {
			continue
		}
		out = append(out, certView{Leaf: c.Leaf, Names: c.Names, Managed: true})
	}
	return out
}

func (s *magicSource) Unmanage(names []string) {
	subjects := make([]certmagic.SubjectIssuer, len(names))
	for i, n := range names {
		subjects[i] = certmagic.SubjectIssuer{Subject: n}
	}
	s.cache.RemoveManaged(subjects)
}

func (s *magicSource) Stop() { s.cache.Stop() }
