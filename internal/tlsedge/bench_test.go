package tlsedge

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
)

// BenchmarkHandshake measures one full TLS 1.3 handshake (no resumption)
// against the manager's TLS config (certmagic certificate lookup, internal
// CA ECDSA P-256 leaf), and against a plain tls.Config holding the same
// certificate, to show what the certificate manager adds per handshake.
func BenchmarkHandshake(b *testing.B) {
	dir := b.TempDir()
	cfg := Config{Enabled: true, Mode: ModeInternal, Listen: "127.0.0.1:0", HTTPListen: "off", Names: []string{"demo.test"}}
	cfg.SetDefaults()
	m, err := New(cfg, Options{DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer m.Stop()
	roots := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(m.RootPath())
	roots.AppendCertsFromPEM(pemBytes)
	leaf, err := m.src.(*magicSource).primary.GetCertificate(&tls.ClientHelloInfo{ServerName: "demo.test"})
	if err != nil {
		b.Fatal(err)
	}
	static := &tls.Config{Certificates: []tls.Certificate{*leaf}, MinVersion: tls.VersionTLS12}

	for _, tc := range []struct {
		name string
		srv  *tls.Config
	}{{"manager", m.TLSConfig()}, {"static", static}} {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						s := tls.Server(c, tc.srv)
						_ = s.Handshake()
						s.Close()
					}()
				}
			}()
			client := &tls.Config{RootCAs: roots, ServerName: "demo.test"}
			b.ReportAllocs()
			for b.Loop() {
				cc, err := tls.Dial("tcp", ln.Addr().String(), client)
				if err != nil {
					b.Fatal(err)
				}
				cc.Close()
			}
		})
	}
}
