package dns

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outpost-edge/outpost/internal/units"
)

const testSecret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==" // base64 test key, not a real secret

func xfrConfig() Config {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	cfg.Transfer = TransferConfig{
		Keys: []TSIGKey{{Name: "xfr-key", Secret: testSecret}},
		Secondaries: []Secondary{
			{Address: "127.0.0.1", Key: "xfr-key"},
			{Address: "127.0.0.2/32"},
		},
	}
	cfg.SetDefaults()
	return cfg
}

// axfr runs a transfer from local (an address on 127/8) and returns the
// records or the error.
func axfr(addr, local string, qtype uint16, key, secret string) ([]mdns.RR, error) {
	m := new(mdns.Msg)
	m.SetQuestion("example.com.", qtype)
	if qtype == mdns.TypeIXFR {
		m.Ns = []mdns.RR{&mdns.SOA{Hdr: mdns.RR_Header{Name: "example.com.", Rrtype: mdns.TypeSOA, Class: mdns.ClassINET}, Ns: "ns.", Mbox: "hm.", Serial: 1}}
	}
	tr := &mdns.Transfer{}
	if key != "" {
		m.SetTsig(key, mdns.HmacSHA256, 300, time.Now().Unix())
		tr.TsigSecret = map[string]string{key: secret}
	}
	d := &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tr.Conn = &mdns.Conn{Conn: conn}
	ch, err := tr.In(m, addr)
	if err != nil {
		return nil, err
	}
	var out []mdns.RR
	for env := range ch {
		if env.Error != nil {
			return out, env.Error
		}
		out = append(out, env.RR...)
	}
	return out, nil
}

func TestTransfer(t *testing.T) {
	s, addr := startServer(t, xfrConfig(), nil, Options{})
	nrec := len(s.Records("example.com"))
	tests := []struct {
		name   string
		local  string
		qtype  uint16
		key    string
		secret string
		ok     bool
		errHas string
	}{
		{name: "TSIG AXFR", local: "127.0.0.1", qtype: mdns.TypeAXFR, key: "xfr-key.", secret: testSecret, ok: true},
		{name: "IXFR answered as AXFR", local: "127.0.0.1", qtype: mdns.TypeIXFR, key: "xfr-key.", secret: testSecret, ok: true},
		{name: "unsigned from keyed secondary", local: "127.0.0.1", qtype: mdns.TypeAXFR, errHas: "rcode: 5"},
		{name: "wrong secret", local: "127.0.0.1", qtype: mdns.TypeAXFR, key: "xfr-key.", secret: "d3Jvbmc=", errHas: ""},
		{name: "unknown key", local: "127.0.0.1", qtype: mdns.TypeAXFR, key: "other.", secret: testSecret, errHas: ""},
		{name: "keyless secondary", local: "127.0.0.2", qtype: mdns.TypeAXFR, ok: true},
		{name: "not a secondary", local: "127.0.0.3", qtype: mdns.TypeAXFR, errHas: "rcode: 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rrs, err := axfr(addr, tc.local, tc.qtype, tc.key, tc.secret)
			if !tc.ok {
				if err == nil {
					t.Fatalf("transfer allowed: %d records", len(rrs))
				}
				if tc.errHas != "" && !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %v, want %s", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rrs) != nrec+1 || rrs[0].Header().Rrtype != mdns.TypeSOA || rrs[len(rrs)-1].Header().Rrtype != mdns.TypeSOA {
				t.Fatalf("got %d records (want %d) framed by SOA", len(rrs), nrec+1)
			}
		})
	}
	// Over UDP: AXFR is refused as FORMERR, IXFR gets the SOA.
	c := &mdns.Client{Net: "udp", Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}}}
	m := newQuery("example.com.", mdns.TypeIXFR)
	r, _, err := c.Exchange(m, addr)
	if err != nil || len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != mdns.TypeSOA {
		t.Fatalf("UDP IXFR: %v %v", r, err)
	}
	m = newQuery("example.com.", mdns.TypeAXFR)
	if r, _, err = c.Exchange(m, addr); err != nil || r.Rcode != mdns.RcodeFormatError {
		t.Fatalf("UDP AXFR: %v %v", r, err)
	}
}

// notifySink is a secondary that records NOTIFY messages.
type notifySink struct {
	mu   sync.Mutex
	got  []string
	tsig []error
}

func (n *notifySink) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	n.mu.Lock()
	if r.Opcode == mdns.OpcodeNotify {
		n.got = append(n.got, r.Question[0].Name)
		n.tsig = append(n.tsig, w.TsigStatus())
	}
	n.mu.Unlock()
	m := new(mdns.Msg)
	m.SetReply(r)
	if t := r.IsTsig(); t != nil {
		m.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
	}
	w.WriteMsg(m)
}

func (n *notifySink) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.got)
}

func TestNotifyAndReload(t *testing.T) {
	sink := &notifySink{}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sec := &mdns.Server{PacketConn: pc, Handler: sink, TsigSecret: map[string]string{"xfr-key.": testSecret}}
	go sec.ActivateAndServe()
	t.Cleanup(func() { sec.Shutdown() })

	dir := t.TempDir()
	zf := filepath.Join(dir, "example.com.zone")
	orig, err := os.ReadFile(testdata("example.com.zone"))
	if err != nil {
		t.Fatal(err)
	}
	inc, _ := os.ReadFile(testdata("example.com.inc"))
	os.WriteFile(filepath.Join(dir, "example.com.inc"), inc, 0o644)
	os.WriteFile(zf, orig, 0o644)

	cfg := xfrConfig()
	cfg.Zones = []ZoneConfig{{File: zf}}
	cfg.Transfer.Notify = []NotifyTarget{{Address: pc.LocalAddr().String(), Key: "xfr-key"}}
	s, addr := startServer(t, cfg, nil, Options{})

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("NOTIFY at startup", func() bool { return sink.count() >= 1 })
	startup := sink.count()
	if err := s.AddRecord(mustRR(t, `_acme-challenge.example.com. 60 IN TXT "n"`)); err != nil {
		t.Fatal(err)
	}
	waitFor("NOTIFY after a runtime change", func() bool { return sink.count() > startup })
	sink.mu.Lock()
	for i := range sink.got {
		if sink.got[i] != "example.com." || sink.tsig[i] != nil {
			t.Fatalf("NOTIFY %q tsig %v", sink.got[i], sink.tsig[i])
		}
	}
	sink.mu.Unlock()
	serial, _ := s.Serial("example.com")

	// A broken file: the old zone stays, the error names file:line.
	broken := strings.Replace(string(orig), "www     IN A    192.0.2.80", "www     IN A    192.0.2.999", 1)
	os.WriteFile(zf, []byte(broken), 0o644)
	err = s.Reload(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), zf+":19:") {
		t.Fatalf("reload error %v, want %s:19", err, zf)
	}
	r := exchange(t, addr, "udp", newQuery("www.example.com.", mdns.TypeA))
	if got := answerAddrs(r); len(got) != 1 || got[0] != "192.0.2.80" {
		t.Fatalf("after failed reload: %v", got)
	}
	r = exchange(t, addr, "udp", newQuery("_acme-challenge.example.com.", mdns.TypeTXT))
	if len(r.Answer) != 1 {
		t.Fatal("runtime record lost on failed reload")
	}

	// A fixed file with a change: served, serial moves forward, NOTIFY sent.
	before := sink.count()
	fixed := strings.Replace(string(orig), "www     IN A    192.0.2.80", "www     IN A    192.0.2.81", 1)
	os.WriteFile(zf, []byte(fixed), 0o644)
	if err := s.Reload(cfg, nil); err != nil {
		t.Fatal(err)
	}
	r = exchange(t, addr, "udp", newQuery("www.example.com.", mdns.TypeA))
	if got := answerAddrs(r); len(got) != 1 || got[0] != "192.0.2.81" {
		t.Fatalf("after reload: %v", got)
	}
	if s2, _ := s.Serial("example.com"); !serialAfter(s2, serial) {
		t.Fatalf("serial %d not after %d", s2, serial)
	}
	waitFor("NOTIFY after reload", func() bool { return sink.count() > before })
	// An unchanged reload keeps the serial.
	s3, _ := s.Serial("example.com")
	if err := s.Reload(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if s4, _ := s.Serial("example.com"); s4 != s3 {
		t.Fatalf("unchanged reload moved the serial %d -> %d", s3, s4)
	}
}

func TestZoneFileErrors(t *testing.T) {
	tests := []struct {
		file, want string
	}{
		{"broken.zone", "broken.zone:5: "},
		{"escape.zone", "escape.zone:4: "},
		{"missing.zone", "no such file"},
	}
	for _, tc := range tests {
		cfg := testConfig(ZoneConfig{File: testdata(tc.file)})
		_, err := New(cfg, nil, Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.file, err, tc.want)
		}
	}
	// A symbolic link in the zone's directory that leads out of it is
	// not followed by $INCLUDE.
	outside := filepath.Join(t.TempDir(), "secret.zone")
	os.WriteFile(outside, []byte("leak 300 IN TXT \"outside\"\n"), 0o644)
	zdir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(zdir, "link.zone")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(zdir, "in.zone"), []byte("$ORIGIN in.test.\n@ 300 IN SOA ns1 hm 1 2 3 4 5\n@ 300 IN NS ns1\nns1 300 IN A 192.0.2.1\n$INCLUDE link.zone\n"), 0o644)
	if _, err := New(testConfig(ZoneConfig{File: filepath.Join(zdir, "in.zone")}), nil, Options{}); err == nil || !strings.Contains(err.Error(), "in.zone:5") {
		t.Errorf("$INCLUDE through a symlink out of the directory: %v, want an error at in.zone:5", err)
	}
	// A link that stays inside is fine.
	os.WriteFile(filepath.Join(zdir, "real.zone"), []byte("inside 300 IN TXT \"ok\"\n"), 0o644)
	os.Remove(filepath.Join(zdir, "link.zone"))
	if err := os.Symlink("real.zone", filepath.Join(zdir, "link.zone")); err != nil {
		t.Fatal(err)
	}
	if _, err := New(testConfig(ZoneConfig{File: filepath.Join(zdir, "in.zone")}), nil, Options{}); err != nil {
		t.Errorf("$INCLUDE through a symlink inside the directory: %v", err)
	}
	// Quick-mode origin detection needs an absolute SOA owner or $ORIGIN.
	dir := t.TempDir()
	p := filepath.Join(dir, "rel.zone")
	os.WriteFile(p, []byte("@ 300 IN SOA ns1 hm 1 2 3 4 5\n"), 0o644)
	if _, err := New(testConfig(ZoneConfig{File: p}), nil, Options{}); err == nil || !strings.Contains(err.Error(), "origin") {
		t.Errorf("relative SOA: %v", err)
	}
	if _, err := New(testConfig(ZoneConfig{File: p, Origin: "rel.test"}), nil, Options{}); err != nil {
		t.Errorf("explicit origin: %v", err)
	}
}

// bigZone writes a zone of n TXT records (about 130 bytes each on the
// wire, so an AXFR is far more than the socket buffers hold).
func bigZone(t testing.TB, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "big.test.zone")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "$ORIGIN big.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.53")
	pad := strings.Repeat("x", 100)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "r%d IN TXT \"%s%d\"\n", i, pad, i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// transferGoroutines returns the stacks of goroutines inside transfer.
func transferGoroutines() []string {
	buf := make([]byte, 1<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "dns.(*Server).transfer") || strings.Contains(g, "(*Transfer).Out") {
			out = append(out, g)
		}
	}
	return out
}

// waitTransfers waits until want(number of transfer goroutines) holds.
func waitTransfers(t *testing.T, what string, d time.Duration, want func(n int) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		g := transferGoroutines()
		if want(len(g)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, strings.Join(g, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startAXFR connects from 127.0.0.2 (a keyless secondary) and sends an
// AXFR for big.test without reading anything back.
func startAXFR(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	d := &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn := c.(*net.TCPConn)
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadBuffer(4096) // fill up sooner
	q, err := newQuery("big.test.", mdns.TypeAXFR).Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(binary.BigEndian.AppendUint16(nil, uint16(len(q)))); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(q); err != nil {
		t.Fatal(err)
	}
	return conn
}

func bigXFRConfig(t *testing.T) Config {
	cfg := testConfig(ZoneConfig{File: bigZone(t, 60000)})
	cfg.Transfer = TransferConfig{Secondaries: []Secondary{{Address: "127.0.0.2"}}}
	cfg.TCPReadTimeout = units.Duration(300 * time.Millisecond) // also bounds each write
	cfg.SetDefaults()
	return cfg
}

// shutdownPromptly shuts s down and fails unless it returns cleanly well
// within the context's 10 s.
func shutdownPromptly(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown after %s: %v\n%s", time.Since(start).Round(time.Millisecond), err, strings.Join(transferGoroutines(), "\n\n"))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Shutdown took %s", d)
	}
	waitTransfers(t, "the transfer goroutines to end", 2*time.Second, func(n int) bool { return n == 0 })
}

// TestTransferClientGone: a secondary that disconnects (RST) in the middle
// of a large AXFR makes Transfer.Out stop on a write error; the records
// producer must stop too, so the transfer is counted as failed and
// Shutdown is not held up.
func TestTransferClientGone(t *testing.T) {
	m, _ := NewMetrics(nil)
	s, addr := startServer(t, bigXFRConfig(t), nil, Options{Metrics: m})
	conn := startAXFR(t, addr)
	waitTransfers(t, "the transfer to start", 5*time.Second, func(n int) bool { return n > 0 })
	_ = conn.SetLinger(0) // close with RST: the next write fails at once
	conn.Close()
	errors := m.xfr.WithLabelValues("error")
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(errors) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("transfer not ended as failed:\n%s", strings.Join(transferGoroutines(), "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	shutdownPromptly(t, s)
}

// TestTransferClientNotReading: a secondary that asks for a large AXFR and
// never reads fills the socket buffers; the write deadline ends the
// transfer and Shutdown returns promptly.
func TestTransferClientNotReading(t *testing.T) {
	m, _ := NewMetrics(nil)
	s, addr := startServer(t, bigXFRConfig(t), nil, Options{Metrics: m})
	startAXFR(t, addr)
	waitTransfers(t, "the transfer to start", 5*time.Second, func(n int) bool { return n > 0 })
	shutdownPromptly(t, s)
	if v := testutil.ToFloat64(m.xfr.WithLabelValues("error")); v != 1 {
		t.Fatalf("transfers_total{error} = %v, want 1", v)
	}
}
