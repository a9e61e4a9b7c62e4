package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// freeDNSAddr is a 127.0.0.1 port free for both TCP and UDP.
func freeDNSAddr(t *testing.T) string {
	t.Helper()
	for i := 0; i < 20; i++ {
		addr := freePort(t)
		pc, err := net.ListenPacket("udp", addr)
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return ""
}

// TestDNSQuickModeServes runs `outpost dns` with two zones, one named by
// its file alone (the origin comes from the SOA) and one as origin=FILE
// (a file with relative names only), queries both over UDP and TCP, and
// stops it with SIGTERM, expecting exit status 0.
func TestDNSQuickModeServes(t *testing.T) {
	exampleCom, err := filepath.Abs(filepath.Join("..", "..", "testdata", "dns", "example.com.zone"))
	if err != nil {
		t.Fatal(err)
	}
	relative := filepath.Join(t.TempDir(), "relative.zone")
	zone := "$TTL 300\n" +
		"@    IN SOA ns1 hostmaster 42 7200 3600 1209600 60\n" +
		"@    IN NS  ns1\n" +
		"ns1  IN A   192.0.2.153\n" +
		"www  IN A   192.0.2.180\n"
	if err := os.WriteFile(relative, []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeDNSAddr(t)
	cmd := outpost("dns", "--listen", addr, "--zone", exampleCom, "--zone", "example.org="+relative)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	}()

	query := func(network, name string, qtype uint16) (*mdns.Msg, error) {
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		m.RecursionDesired = false
		c := &mdns.Client{Net: network, Timeout: 500 * time.Millisecond}
		r, _, err := c.Exchange(m, addr)
		return r, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if r, err := query("udp", "example.org.", mdns.TypeSOA); err == nil && r.Rcode == mdns.RcodeSuccess {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("outpost dns exited before answering: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("outpost dns never answered")
		}
		time.Sleep(50 * time.Millisecond)
	}

	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		aa     bool
		answer string
	}{
		{"www.example.com.", mdns.TypeA, mdns.RcodeSuccess, true, "www.example.com.\t3600\tIN\tA\t192.0.2.80"},
		{"alias.example.com.", mdns.TypeCNAME, mdns.RcodeSuccess, true, "alias.example.com.\t3600\tIN\tCNAME\twww.example.com."},
		{"www.example.org.", mdns.TypeA, mdns.RcodeSuccess, true, "www.example.org.\t300\tIN\tA\t192.0.2.180"},
		{"example.org.", mdns.TypeSOA, mdns.RcodeSuccess, true, "example.org.\t300\tIN\tSOA\tns1.example.org. hostmaster.example.org. 42 7200 3600 1209600 60"},
		{"nope.example.org.", mdns.TypeA, mdns.RcodeNameError, true, ""},
		{"www.example.net.", mdns.TypeA, mdns.RcodeRefused, false, ""},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			r, err := query(network, tc.name, tc.qtype)
			if err != nil {
				t.Errorf("%s %s: %v", network, tc.name, err)
				continue
			}
			if r.Rcode != tc.rcode || r.Authoritative != tc.aa {
				t.Errorf("%s %s: rcode %s AA %v, want %s AA %v", network, tc.name,
					mdns.RcodeToString[r.Rcode], r.Authoritative, mdns.RcodeToString[tc.rcode], tc.aa)
			}
			var got []string
			for _, rr := range r.Answer {
				got = append(got, rr.String())
			}
			if strings.Join(got, "\n") != tc.answer {
				t.Errorf("%s %s: answer %q, want %q", network, tc.name, got, tc.answer)
			}
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("outpost dns did not exit after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "example.com.,example.org.") {
		t.Errorf("the serving log does not list both zones:\n%s", stderr.String())
	}
}
