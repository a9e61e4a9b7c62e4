package tlsedge

import (
	"crypto/ecdsa"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// TestModernCiphersOnly: TLS 1.2 clients get AEAD suites with ECDHE only;
// one offering nothing but CBC is refused. TLS 1.3 is unaffected.
func TestModernCiphersOnly(t *testing.T) {
	e, roots := newInternal(t, nil)
	dial := func(version, suite uint16) (*tls.Conn, error) {
		c := &tls.Config{RootCAs: roots, ServerName: "demo.test", MinVersion: version, MaxVersion: version}
		if suite != 0 {
			c.CipherSuites = []uint16{suite}
		}
		return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.tlsAddr, c)
	}
	conn, err := dial(tls.VersionTLS13, 0)
	if err != nil {
		t.Fatalf("TLS 1.3: %v", err)
	}
	st := conn.ConnectionState()
	conn.Close()
	// The CBC and AEAD suites below are the ECDSA ones: the key of the
	// certificate served.
	if _, ok := st.PeerCertificates[0].PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("certificate key is %T, want ECDSA", st.PeerCertificates[0].PublicKey)
	}

	tests := []struct {
		suite uint16
		ok    bool
	}{
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, true},
		{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, true},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, false},
	}
	for _, tc := range tests {
		t.Run(tls.CipherSuiteName(tc.suite), func(t *testing.T) {
			conn, err := dial(tls.VersionTLS12, tc.suite)
			if tc.ok {
				if err != nil {
					t.Fatalf("handshake failed: %v", err)
				}
				defer conn.Close()
				if got := conn.ConnectionState().CipherSuite; got != tc.suite {
					t.Fatalf("negotiated %s", tls.CipherSuiteName(got))
				}
				return
			}
			if err == nil {
				conn.Close()
				t.Fatalf("handshake with only %s succeeded, want refused", tls.CipherSuiteName(tc.suite))
			}
			if !strings.Contains(err.Error(), "handshake failure") {
				t.Fatalf("refused for the wrong reason: %v", err)
			}
		})
	}
}
