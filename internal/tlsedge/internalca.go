package tlsedge

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// internalIssuerKey names certificates from the internal CA in storage.
const internalIssuerKey = "outpost-internal"

// internalCA is a local certificate authority for development and the
// demo. Its root is generated once and kept under the storage directory,
// so restarts keep serving certificates clients already trust. It is a
// certmagic Issuer, so storage, caching and renewal work as in ACME mode.
type internalCA struct {
	root     *x509.Certificate
	rootPEM  []byte
	key      crypto.Signer
	lifetime time.Duration
	now      func() time.Time
	rand     io.Reader
}

var _ certmagic.Issuer = (*internalCA)(nil)

// loadOrCreateCA reads root.pem and root.key from dir, creating them when
// absent. The key file is written 0600 and both files appear atomically.
func loadOrCreateCA(dir string, rootLifetime, leafLifetime time.Duration, now func() time.Time, rnd io.Reader) (*internalCA, error) {
	certPath := filepath.Join(dir, "root.pem")
	keyPath := filepath.Join(dir, "root.key")
	ca := &internalCA{lifetime: leafLifetime, now: now, rand: rnd}

	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		if err := ca.parse(certPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("internal CA in %s: %w", dir, err)
		}
		// As ssh does with an identity file: a signing key others can
		// read is refused, not used (whoever read it can mint
		// certificates every client of this root trusts).
		if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("internal CA: %s has mode %v, readable by others: chmod 600 it "+
				"(or remove root.key and root.pem to generate a new root, if others may have copied it)", keyPath, fi.Mode().Perm())
		}
		return ca, nil
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, fmt.Errorf("internal CA: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, fmt.Errorf("internal CA: %w", keyErr)
	default:
		return nil, fmt.Errorf("internal CA in %s: one of root.pem/root.key is missing; remove the other to generate a new root", dir)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return nil, fmt.Errorf("internal CA key: %w", err)
	}
	skid, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(rnd),
		Subject:               pkix.Name{CommonName: "Outpost Internal Root CA " + t.UTC().Format("2006-01-02"), Organization: []string{"Outpost"}},
		NotBefore:             t.Add(-time.Hour),
		NotAfter:              t.Add(rootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rnd, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("internal CA root: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("internal CA: %w", err)
	}
	// The key goes first: a crash between the two writes leaves a key
	// without a root, which the next start reports instead of silently
	// minting a second root.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("internal CA: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("internal CA: %w", err)
	}
	if err := ca.parse(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return ca, nil
}

func (ca *internalCA) parse(certPEM, keyPEM []byte) error {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return errors.New("root.pem holds no certificate")
	}
	root, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return fmt.Errorf("root.pem: %w", err)
	}
	if !root.IsCA {
		return errors.New("root.pem is not a CA certificate")
	}
	key, err := certmagic.PEMDecodePrivateKey(keyPEM)
	if err != nil {
		return fmt.Errorf("root.key: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(root.PublicKey) {
		return errors.New("root.key does not match root.pem")
	}
	ca.root, ca.rootPEM, ca.key = root, pem.EncodeToMemory(cb), key
	return nil
}

// IssuerKey implements certmagic.Issuer.
func (ca *internalCA) IssuerKey() string { return internalIssuerKey }

// Issue implements certmagic.Issuer: it signs csr's names with the root.
func (ca *internalCA) Issue(_ context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("internal CA: bad CSR signature: %w", err)
	}
	if len(csr.DNSNames) == 0 && len(csr.IPAddresses) == 0 {
		return nil, errors.New("internal CA: CSR names no subject")
	}
	skid, err := subjectKeyID(csr.PublicKey)
	if err != nil {
		return nil, err
	}
	t := ca.now()
	notAfter := t.Add(ca.lifetime)
	if notAfter.After(ca.root.NotAfter) {
		notAfter = ca.root.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(ca.rand),
		Subject:      pkix.Name{CommonName: firstName(csr)},
		DNSNames:     csr.DNSNames,
		IPAddresses:  csr.IPAddresses,
		// Backdated a little so a client with a slightly slow clock
		// accepts a certificate issued a moment ago.
		NotBefore:             t.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(ca.rand, tmpl, ca.root, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("internal CA: signing: %w", err)
	}
	return &certmagic.IssuedCertificate{
		Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

func firstName(csr *x509.CertificateRequest) string {
	if len(csr.DNSNames) > 0 {
		return csr.DNSNames[0]
	}
	return csr.IPAddresses[0].String()
}

func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("subject key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

func randomSerial(rnd io.Reader) *big.Int {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rnd, limit)
	if err != nil {
		// A failing entropy source is not recoverable; fall back to a
		// serial from the clock rather than issuing serial 0.
		return big.NewInt(time.Now().UnixNano())
	}
	return n.Add(n, big.NewInt(1))
}

// writeFileAtomic creates path's directory and replaces the file
// atomically, so readers never see a half-written file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, data, perm)
}
