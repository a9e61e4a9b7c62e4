package tlsedge

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/outpost-edge/outpost/internal/acmetest"
	"github.com/outpost-edge/outpost/internal/redistest"
)

// RedisStorage answers as certmagic's FileStorage does: the same
// operations on both, compared result by result. FileStorage is the
// reference — it is what every certmagic user runs.
func TestRedisStorageMatchesFileStorage(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	stores := map[string]certmagic.Storage{
		"file":  &certmagic.FileStorage{Path: t.TempDir()},
		"redis": NewRedisStorage(srv.Client(), "", 0),
	}
	type result struct {
		val  string
		err  string
		list []string
		info string
	}
	errText := func(err error) string {
		switch {
		case err == nil:
			return ""
		case errors.Is(err, fs.ErrNotExist):
			return "not exist"
		}
		return "error"
	}
	type op struct {
		name string
		do   func(certmagic.Storage) result
	}
	var ops []op
	add := func(name string, do func(certmagic.Storage) result) { ops = append(ops, op{name, do}) }
	store := func(k, v string) {
		add("store "+k, func(s certmagic.Storage) result { return result{err: errText(s.Store(ctx, k, []byte(v)))} })
	}
	load := func(k string) {
		add("load "+k, func(s certmagic.Storage) result {
			v, err := s.Load(ctx, k)
			return result{val: string(v), err: errText(err)}
		})
	}
	exists := func(k string) {
		add("exists "+k, func(s certmagic.Storage) result { return result{val: fmt.Sprint(s.Exists(ctx, k))} })
	}
	list := func(k string, rec bool) {
		add(fmt.Sprintf("list %q recursive=%v", k, rec), func(s certmagic.Storage) result {
			l, err := s.List(ctx, k, rec)
			slices.Sort(l)
			return result{list: l, err: errText(err)}
		})
	}
	stat := func(k string) {
		add("stat "+k, func(s certmagic.Storage) result {
			ki, err := s.Stat(ctx, k)
			info := ""
			if err == nil {
				info = fmt.Sprintf("%s terminal=%v", ki.Key, ki.IsTerminal)
				if ki.IsTerminal {
					info += fmt.Sprintf(" size=%d recent=%v", ki.Size, time.Since(ki.Modified) < time.Minute)
				}
			}
			return result{info: info, err: errText(err)}
		})
	}
	del := func(k string) {
		add("delete "+k, func(s certmagic.Storage) result { return result{err: errText(s.Delete(ctx, k))} })
	}

	cert := "certificates/acme-v02/example.com/example.com.crt"
	key := "certificates/acme-v02/example.com/example.com.key"
	meta := "certificates/acme-v02/example.com/example.com.json"
	other := "certificates/acme-v02/example.org/example.org.crt"
	acct := "acme/acme-v02/users/ops@example.test/ops.json"
	load(cert)
	exists(cert)
	stat(cert)
	list("certificates", false)
	store(cert, "CERT")
	store(key, "KEY")
	store(meta, "{}")
	store(other, "OTHER")
	store(acct, "ACCOUNT")
	store("certificatesX/x", "a sibling that only shares the name's start")
	load(cert)
	load(key)
	exists(cert)
	exists("certificates")
	exists("certificates/acme-v02/example.com")
	exists("certificates/acme-v02/example")
	stat(cert)
	stat("certificates/acme-v02")
	stat("certificates/acme")
	list("certificates", false)
	list("certificates", true)
	list("certificates/acme-v02", false)
	list("certificates/acme-v02/example.com", false)
	list(cert, false)
	list("nothing", false)
	list("nothing", true)
	store(cert, "CERT2") // overwrite
	load(cert)
	stat(cert)
	del(key)
	load(key)
	list("certificates/acme-v02/example.com", false)
	del("certificates/acme-v02/example.com") // a directory: everything under it
	load(cert)
	load(meta)
	exists("certificates/acme-v02/example.com")
	load(other)
	list("certificates", true)
	del("certificates/acme-v02/example.com") // already gone
	del("nothing/at/all")
	load("certificatesX/x")
	load(acct)

	for _, op := range ops {
		want := op.do(stores["file"])
		got := op.do(stores["redis"])
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: redis %+v, file storage %+v", op.name, got, want)
		}
	}
}

// The lock is one for the cluster: a second node waits for the first to
// unlock, gives up when its context ends, and takes a lock whose holder
// died once its TTL ran out; the holder's renewals keep a long critical
// section locked past the TTL.
func TestRedisStorageLock(t *testing.T) {
	srv := redistest.Start(t)
	a := NewRedisStorage(srv.Client(), "", time.Second)
	b := NewRedisStorage(srv.Client(), "", time.Second)
	ctx := t.Context()
	if err := a.Lock(ctx, "issue_cert_example.com"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_example.com"); ok || err != nil {
		t.Fatalf("second TryLock: %v %v, want false", ok, err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_example.org"); !ok || err != nil {
		t.Fatalf("another name: %v %v", ok, err)
	}
	if err := b.Unlock(ctx, "issue_cert_example.org"); err != nil {
		t.Fatal(err)
	}

	// Held past three TTLs by renewals: b still cannot take it.
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := b.Lock(short, "issue_cert_example.com")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held: %v, want the context's deadline", err)
	}

	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_example.com") }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("Lock returned %v while a held the lock", err)
	default:
	}
	if err := a.Unlock(ctx, "issue_cert_example.com"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock did not return after Unlock")
	}

	// b dies holding it (its renewals stop, as when its process is
	// killed): a takes the lock once the TTL ran out.
	b.mu.Lock()
	h := b.held["issue_cert_example.com"]
	b.mu.Unlock()
	h.stop()
	<-h.done
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.Lock(wait, "issue_cert_example.com"); err != nil {
		t.Fatalf("Lock after the holder died: %v", err)
	}
	if err := b.Unlock(ctx, "issue_cert_example.com"); err == nil {
		t.Fatal("the dead holder's Unlock released a's lock")
	}
	if ok, _ := b.TryLock(ctx, "issue_cert_example.com"); ok {
		t.Fatal("a's lock was released by the dead holder's Unlock")
	}
	if err := a.Unlock(ctx, "issue_cert_example.com"); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "issue_cert_example.com"); err == nil {
		t.Fatal("Unlock of a lock not held: no error")
	}
}

// With Redis down, every operation fails with an error — a Load is never
// taken for a missing key (certmagic would order a new certificate).
func TestRedisStorageDown(t *testing.T) {
	srv := redistest.Start(t)
	s := NewRedisStorage(srv.Client(), "", time.Second)
	ctx := t.Context()
	if err := s.Store(ctx, "a/b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := s.Load(ctx, "a/b"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load with Redis down: %v, want an error other than not-exist", err)
	}
	if _, err := s.List(ctx, "a", true); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List with Redis down: %v", err)
	}
	if _, err := s.Stat(ctx, "a/b"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat with Redis down: %v", err)
	}
	if err := s.Store(ctx, "a/c", []byte("x")); err == nil {
		t.Fatal("Store with Redis down: no error")
	}
	if err := s.Delete(ctx, "a/b"); err == nil {
		t.Fatal("Delete with Redis down: no error")
	}
	if ok, err := s.TryLock(ctx, "x"); ok || err == nil {
		t.Fatalf("TryLock with Redis down: %v %v", ok, err)
	}
	srv.Restart()
	if v, err := s.Load(ctx, "a/b"); err == nil {
		t.Fatalf("Load after a restart without persistence: %q", v) // redistest keeps nothing
	}
}

// Three nodes sharing the Redis storage, started together, order the
// name once between them: one takes the lock and orders, the others wait
// and load what it stored, and all serve the same certificate.
func TestRedisStorageClusterOrdersOnce(t *testing.T) {
	srv := redistest.Start(t)
	dns, dnsAddr := startOutpostDNS(t)
	txt := RecordServerTXT(dns) // the cluster's DNS: PeerPush stands for this in production
	p := acmetest.Start(t, acmetest.Options{Resolver: dnsAddr})
	const name = "shared.example.test"
	var edges []*testEdge
	for range 3 {
		e, _ := newACMENode(t, acmeSetup{
			challenges: []string{ChallengeDNS01},
			names:      []string{name},
			txt:        txt,
			dnsAddr:    dnsAddr,
			ca:         p,
			storage:    NewRedisStorage(srv.Client(), "", 0),
		})
		edges = append(edges, e)
	}
	errs := make(chan error, len(edges))
	for _, e := range edges {
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			errs <- e.m.ManageSync(ctx, []string{name})
		}()
	}
	for range edges {
		if err := <-errs; err != nil {
			t.Fatalf("ManageSync: %v", err)
		}
	}
	if n := p.Orders(); n != 1 {
		t.Fatalf("%d orders for one name on three nodes, want 1", n)
	}
	serials := map[string]bool{}
	for _, e := range edges {
		serials[serialOf(t, e.tlsAddr, name, p)] = true
	}
	if len(serials) != 1 {
		t.Fatalf("the nodes serve %d different certificates, want 1", len(serials))
	}
	// A node that joins later loads it too.
	late, _ := newACMENode(t, acmeSetup{challenges: []string{ChallengeDNS01}, names: []string{name}, txt: txt, dnsAddr: dnsAddr, ca: p, storage: NewRedisStorage(srv.Client(), "", 0)})
	obtain(t, late, name)
	if n := p.Orders(); n != 1 || !serials[serialOf(t, late.tlsAddr, name, p)] {
		t.Fatalf("a late node ordered (%d orders) or serves another certificate", n)
	}
}

// With Redis down, a node's copy answers its reads — what it stored and
// what it loaded that another node stored — while writes and locks fail
// and a key the copy lacks is an error, not "missing". When Redis is back
// (empty: redistest keeps nothing), a key Redis lacks is missing again,
// and its copy goes.
func TestMirroredRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	a := NewMirrored(NewRedisStorage(srv.Client(), "", time.Second), t.TempDir())
	b := NewMirrored(NewRedisStorage(srv.Client(), "", time.Second), t.TempDir())
	const cert = "certificates/acme/example.com/example.com.crt"
	if err := a.Store(ctx, cert, []byte("CERT")); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Load(ctx, cert); err != nil || string(v) != "CERT" {
		t.Fatalf("b.Load: %q %v", v, err)
	}

	srv.Stop()
	for name, s := range map[string]*Mirrored{"a (stored it)": a, "b (loaded it)": b} {
		if v, err := s.Load(ctx, cert); err != nil || string(v) != "CERT" {
			t.Errorf("%s: Load with Redis down: %q %v", name, v, err)
		}
		if !s.Exists(ctx, cert) {
			t.Errorf("%s: Exists with Redis down: false", name)
		}
		if ki, err := s.Stat(ctx, cert); err != nil || !ki.IsTerminal || ki.Size != 4 {
			t.Errorf("%s: Stat with Redis down: %+v %v", name, ki, err)
		}
		if l, err := s.List(ctx, "certificates", true); err != nil || !slices.Contains(l, cert) {
			t.Errorf("%s: List with Redis down: %v %v", name, l, err)
		}
	}
	if _, err := b.Load(ctx, "certificates/acme/other/other.crt"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a key the copy lacks, Redis down: %v, want Redis's error", err)
	}
	if err := b.Store(ctx, "x/y", []byte("z")); err == nil {
		t.Error("Store with Redis down: no error")
	}
	if ok, err := b.TryLock(ctx, "issue_cert_example.com"); ok || err == nil {
		t.Errorf("TryLock with Redis down: %v %v", ok, err)
	}

	srv.Restart()
	if _, err := b.Load(ctx, cert); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a key Redis lacks: %v, want not-exist", err)
	}
	if b.Local.Exists(ctx, cert) {
		t.Error("the copy of a key Redis lacks was kept")
	}
}

// A node restarted while Redis is down serves the certificate it had,
// from its copy, without ordering one.
func TestMirroredRestartWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	dns, dnsAddr := startOutpostDNS(t)
	txt := RecordServerTXT(dns)
	p := acmetest.Start(t, acmetest.Options{Resolver: dnsAddr})
	const name = "mirror.example.test"
	dataDir := t.TempDir()
	node := func() *testEdge {
		e, _ := newACMENode(t, acmeSetup{
			challenges: []string{ChallengeDNS01}, names: []string{name}, txt: txt, dnsAddr: dnsAddr, ca: p,
			dataDir: dataDir, storage: NewMirrored(NewRedisStorage(srv.Client(), "", 0), filepath.Join(dataDir, "tls")),
		})
		return e
	}
	first := node()
	obtain(t, first, name)
	serial := serialOf(t, first.tlsAddr, name, p)

	srv.Stop()
	again := node()
	obtain(t, again, name)
	if got := serialOf(t, again.tlsAddr, name, p); got != serial {
		t.Fatalf("after a restart with Redis down: serial %s, want %s", got, serial)
	}
	if n := p.Orders(); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
}
