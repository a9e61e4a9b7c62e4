// Package demo runs the whole Outpost edge network on loopback, as
// `outpost demo` promises (DESIGN.md §6): authoritative DNS for demo.test,
// three steered edge nodes (eu, us, ap), two origin service instances and
// one admin API managing all of it.
package demo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/outpost-edge/outpost/configs"
	"github.com/outpost-edge/outpost/gateway"
	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/boltfile"
	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/datadir"
	"github.com/outpost-edge/outpost/internal/edge"
	"github.com/outpost-edge/outpost/internal/node"
	"github.com/outpost-edge/outpost/internal/telemetry"
	"github.com/outpost-edge/outpost/origin"
	"github.com/outpost-edge/outpost/origin/services"
	"github.com/outpost-edge/outpost/origin/store"
)

// The demo contract's addresses.
const (
	DNSAddr   = "127.0.0.1:8053"
	AdminAddr = "127.0.0.1:9090"
	Origin1   = "127.0.0.1:9001"
	Origin2   = "127.0.0.1:9002"
)

// Edge is one demo edge node.
type Edge struct {
	Name string
	IP   string
}

// Edges are the three regions, in contract order.
var Edges = []Edge{{"eu", "127.0.0.11"}, {"us", "127.0.0.12"}, {"ap", "127.0.0.13"}}

// EdgeAddr is an edge's HTTP address.
func (e Edge) EdgeAddr() string { return e.IP + ":8080" }

// Options configure a demo run.
type Options struct {
	// DataDir holds everything the demo writes. Default $TMPDIR/outpost-demo.
	DataDir string
	// Token is the admin token; generated when empty.
	Token string
	// Log receives the process log; nil writes text to stderr.
	Log *slog.Logger
}

// Demo is a running demo network.
type Demo struct {
	DataDir string
	Token   string
	Seed    services.SeedResult

	log      *slog.Logger
	reg      *prometheus.Registry
	nodes    []*node.Node
	keys     *gateway.KeyStore
	originDB *bolt.DB
	dirLock  *datadir.Lock  // this process owns DataDir
	servers  []*http.Server // origins and admin
	// stopSweep ends the session sweeper; swept is closed when it has.
	stopSweep context.CancelFunc
	swept     chan struct{}
	started   time.Time
	secrets   map[string]string
	// reloadMu runs reloads one at a time, from reading the file to the
	// last node applying it, so overlapping reloads cannot leave the
	// edges on different versions.
	reloadMu sync.Mutex
}

// Start brings the network up; on error everything already started is
// stopped again.
func Start(o Options) (d *Demo, err error) {
	if o.DataDir == "" {
		o.DataDir = filepath.Join(os.TempDir(), "outpost-demo")
	}
	if o.Log == nil {
		o.Log = telemetry.NewLogger(os.Stderr, "info", "text")
	}
	if o.Token == "" {
		o.Token = randomHex(16)
	}
	d = &Demo{DataDir: o.DataDir, Token: o.Token, log: o.Log, reg: telemetry.NewRegistry(), started: time.Now()}
	defer func() {
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d.Shutdown(ctx)
			d = nil
		}
	}()

	// Bind every TCP address first, so a port in use is named before
	// anything starts.
	lns := map[string]net.Listener{}
	for _, a := range []string{Origin1, Origin2, AdminAddr, Edges[0].EdgeAddr(), Edges[1].EdgeAddr(), Edges[2].EdgeAddr()} {
		ln, err := edge.Listen(a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return d, err
		}
		lns[a] = ln
	}
	used := map[string]bool{}
	defer func() {
		for a, l := range lns {
			if !used[a] {
				l.Close()
			}
		}
	}()

	if d.dirLock, err = datadir.Acquire(d.DataDir); err != nil {
		return d, err
	}
	if err := d.writeFiles(); err != nil {
		return d, err
	}
	sk, err := d.signingKey()
	if err != nil {
		return d, err
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(sk.Public())
	d.secrets = map[string]string{
		"OUTPOST_DEMO_DATA":            d.DataDir,
		"OUTPOST_DEMO_TOKEN":           d.Token,
		"OUTPOST_DEMO_IDENTITY_SECRET": randomHex(32),
		"OUTPOST_DEMO_JWT_PUBLIC_KEY":  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})),
	}

	// Origins: two stateless instances sharing one bbolt store, one
	// session bucket (refresh tokens) and one timeline cache (the embedded
	// default; see docs/origin.md).
	d.originDB, err = boltfile.Open(filepath.Join(d.DataDir, "origin.db"), 2*time.Second)
	if err != nil {
		return d, fmt.Errorf("origin store: %w", err)
	}
	st, err := store.NewBolt(d.originDB)
	if err != nil {
		return d, err
	}
	purger, err := origin.NewPurgeClient("http://"+AdminAddr, d.Token, nil)
	if err != nil {
		return d, err
	}
	cache := origin.NewMemoryCache(10000, nil)
	sessions, err := origin.NewBoltSessions(d.originDB, origin.SessionOptions{})
	if err != nil {
		return d, err
	}
	var sweepCtx context.Context
	sweepCtx, d.stopSweep = context.WithCancel(context.Background())
	d.swept = make(chan struct{})
	go func() {
		defer close(d.swept)
		sessions.RunSweeper(sweepCtx, time.Hour, d.log)
	}()
	var apps []*services.App
	for i, addr := range []string{Origin1, Origin2} {
		app, err := services.New(services.Config{
			Store: st, SigningKey: sk, IdentitySecret: []byte(d.secrets["OUTPOST_DEMO_IDENTITY_SECRET"]),
			Purger: purger, Cache: cache, Sessions: sessions, Instance: fmt.Sprintf("origin-%d", i+1),
			Logger: d.log.With("instance", i+1),
		})
		if err != nil {
			return d, err
		}
		apps = append(apps, app)
		d.secrets["OUTPOST_DEMO_JWT_KID"] = app.KeyID()
		srv := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
		used[addr] = true
		go srv.Serve(lns[addr])
		d.servers = append(d.servers, srv)
	}

	// Edges: one config file, three nodes.
	d.keys, err = gateway.OpenKeyStore(filepath.Join(d.DataDir, "keys.db"))
	if err != nil {
		return d, err
	}
	data, err := d.readConfig()
	if err != nil {
		return d, err
	}
	for _, e := range Edges {
		cfg, err := d.nodeConfig(e, data)
		if err != nil {
			return d, errors.New(config.Format(err))
		}
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"outpost_node": e.Name}, d.reg)
		n, err := node.New(cfg, node.Options{
			Logger: d.log.With("node", e.Name), Registerer: reg,
			EdgeListener: lns[e.EdgeAddr()], Shared: &node.Shared{Keys: d.keys},
		})
		if err != nil {
			return d, fmt.Errorf("node %s: %w", e.Name, err)
		}
		used[e.EdgeAddr()] = true
		d.nodes = append(d.nodes, n)
		if err := n.Start(); err != nil {
			return d, fmt.Errorf("node %s: %w", e.Name, listenError(err))
		}
	}

	adm := d.adminServer()
	srv := &http.Server{Handler: adm, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	used[AdminAddr] = true
	go srv.Serve(lns[AdminAddr])
	d.servers = append(d.servers, srv)

	// Seed last: writes purge the edges through the admin API, which is up now.
	seedCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	d.Seed, err = apps[0].Seed(seedCtx)
	cancel()
	if err != nil {
		return d, fmt.Errorf("seed: %w", err)
	}
	return d, nil
}

// listenError rewrites a failed listen of a node's own listeners (DNS over
// UDP and TCP) in the words edge.Listen uses for the addresses bound up
// front, so every port in use reads the same way and is named once.
func listenError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "listen" && oe.Addr != nil {
		return &edge.ListenError{Addr: oe.Net + " " + oe.Addr.String(), Err: oe.Err}
	}
	return err
}

// readConfig reads $DATA/demo.yaml once for every node, so all three
// load the same version of it.
func (d *Demo) readConfig() ([]byte, error) {
	return os.ReadFile(filepath.Join(d.DataDir, "demo.yaml"))
}

// nodeConfig loads data, read from $DATA/demo.yaml, as node e.
func (d *Demo) nodeConfig(e Edge, data []byte) (*config.Config, error) {
	path := filepath.Join(d.DataDir, "demo.yaml")
	lookup := func(k string) (string, bool) {
		switch k {
		case "OUTPOST_NODE":
			return e.Name, true
		case "OUTPOST_NODE_IP":
			return e.IP, true
		}
		if v, ok := d.secrets[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}
	cfg, err := config.Parse(path, data, e.Name, lookup)
	if err != nil {
		return nil, err // field errors, listed one by one by the reload handler
	}
	if e.Name == "eu" && cfg.DNS != nil {
		// The demo's well-known DNS address is served by the eu node.
		cfg.DNS.Listen = append(cfg.DNS.Listen, DNSAddr)
	}
	return cfg, nil
}

// writeFiles puts the embedded config and zone into the data directory,
// where reload reads them (edit $DATA/demo.yaml, then POST /v1/reload).
// Each start writes the built-in versions, so the demo always matches its
// contract; an edited copy is kept as NAME.bak rather than lost.
func (d *Demo) writeFiles() error {
	for _, name := range []string{"demo.yaml", "demo.test.zone"} {
		b, err := configs.FS.ReadFile(name)
		if err != nil {
			return err
		}
		path := filepath.Join(d.DataDir, name)
		// Atomic writes: a crash or a full disk mid-write must not leave
		// a cut copy that the next start then saves over the .bak.
		if old, err := os.ReadFile(path); err == nil && !bytes.Equal(old, b) {
			if err := atomicfile.Write(path+".bak", old, 0o600); err != nil {
				return err
			}
			d.log.Warn("the data directory had an edited copy; it is saved and the built-in one restored",
				"file", path, "saved_as", path+".bak")
		}
		if err := atomicfile.Write(path, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// signingKey loads or creates the user service's JWT key, so tokens stay
// valid across demo restarts.
func (d *Demo) signingKey() (ed25519.PrivateKey, error) {
	path := filepath.Join(d.DataDir, "jwt-ed25519.pem")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		// A key that does not parse is not replaced: every token and
		// session signed with it would stop working without a word.
		if blk, _ := pem.Decode(b); blk != nil {
			if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
				if sk, ok := k.(ed25519.PrivateKey); ok {
					return sk, nil
				}
			}
		}
		return nil, fmt.Errorf("%s holds no Ed25519 private key (damaged?): remove it to generate a new one; tokens signed with the old key stop working", path)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, _ := x509.MarshalPKCS8PrivateKey(sk)
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return sk, nil
}

// Reload re-reads $DATA/demo.yaml, once, for every node. All three
// configs are loaded and validated before any is applied.
func (d *Demo) Reload() (uint64, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	data, err := d.readConfig()
	if err != nil {
		return d.nodes[0].Generation(), err
	}
	cfgs := make([]*config.Config, len(Edges))
	for i, e := range Edges {
		cfg, err := d.nodeConfig(e, data)
		if err != nil {
			return d.nodes[0].Generation(), err
		}
		cfgs[i] = cfg
	}
	// All three are checked before any is applied, so a config one edge
	// refuses leaves all three on the old one.
	for i, e := range Edges {
		if err := d.nodes[i].Check(cfgs[i]); err != nil {
			return d.nodes[i].Generation(), fmt.Errorf("node %s: %w", e.Name, err)
		}
	}
	var gen uint64
	for i, e := range Edges {
		g, err := d.nodes[i].Apply(cfgs[i])
		if err != nil {
			return g, fmt.Errorf("node %s: %w", e.Name, err)
		}
		gen = g
	}
	return gen, nil
}

// StopOrigin stops origin instance i (0 or 1), as a crash would: the edges
// notice through failed requests and health checks.
func (d *Demo) StopOrigin(i int) error {
	if i < 0 || i >= 2 || i >= len(d.servers) {
		return fmt.Errorf("no origin instance %d", i)
	}
	return d.servers[i].Close()
}

// Node returns a running node by name.
func (d *Demo) Node(name string) *node.Node {
	for _, n := range d.nodes {
		if n.Name() == name {
			return n
		}
	}
	return nil
}

// Shutdown stops everything, edges first so in-flight requests still find
// their origins.
func (d *Demo) Shutdown(ctx context.Context) error {
	var errs []error
	for _, n := range d.nodes {
		errs = append(errs, n.Shutdown(ctx))
	}
	for _, s := range d.servers {
		errs = append(errs, s.Shutdown(ctx))
	}
	if d.stopSweep != nil {
		d.stopSweep()
		<-d.swept // before the store it sweeps is closed
	}
	if d.keys != nil {
		errs = append(errs, d.keys.Close())
	}
	if d.originDB != nil {
		errs = append(errs, d.originDB.Close())
	}
	errs = append(errs, d.dirLock.Release()) // last: nothing writes there now
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PrintGuide writes the commands to try.
func (d *Demo) PrintGuide(w io.Writer) {
	fmt.Fprintf(w, `
Outpost demo is running — three edges, one config (%s/demo.yaml).

  DNS (demo.test)   %s  and each edge's own address, port 8053
  edges             eu http://127.0.0.11:8080   us http://127.0.0.12:8080   ap http://127.0.0.13:8080
                    (HTTPS on port 8443 of each, internal CA root in the data directory)
  origins           http://%s  http://%s
  admin API         http://%s   token: %s
  data              %s

Try:
  # DNS steering by client subnet (EDNS Client Subnet): NL → eu, US → us, JP → ap (dig: Debian's dnsutils)
  dig @127.0.0.1 -p 8053 www.demo.test +subnet=193.0.0.0/24 +short
  dig @127.0.0.1 -p 8053 www.demo.test +subnet=8.8.8.0/24 +short
  dig @127.0.0.1 -p 8053 www.demo.test +subnet=133.1.0.0/16 +short

  # A static asset through the eu edge: MISS, then HIT
  curl -sI -H 'Host: www.demo.test' http://127.0.0.11:8080/static/app.css | grep -iE 'x-cache|age|cache-status'
  curl -sI -H 'Host: www.demo.test' http://127.0.0.11:8080/static/app.css | grep -iE 'x-cache|age|cache-status'

  # The same over HTTPS (HTTP/2; HTTP/3 is advertised with Alt-Svc), trusting the demo's internal CA
  curl -sI --cacert %s/demo-root.pem --resolve www.demo.test:8443:127.0.0.11 https://www.demo.test:8443/static/app.css

  # Log in (JWT), post a tweet through gateway and load balancer, read the timeline
  TOKEN=$(curl -s -H 'Host: www.demo.test' http://127.0.0.11:8080/api/users/login \
      -d '{"username":"alice","password":"alice-password"}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -s -H 'Host: www.demo.test' -H "Authorization: Bearer $TOKEN" http://127.0.0.11:8080/api/tweets -d '{"text":"hello from the edge"}'
  curl -s -H 'Host: www.demo.test' -H "Authorization: Bearer $TOKEN" http://127.0.0.11:8080/api/timeline
  curl -si -H 'Host: www.demo.test' http://127.0.0.11:8080/api/timeline | head -1        # 401 without a token

  # Purge the asset on all three edges, then see the next request MISS
  curl -s -H 'Authorization: Bearer %s' http://%s/v1/purge -d '{"urls":["http://www.demo.test/static/app.css"]}'
  go run ./cmd/outpost purge --admin http://%s --token %s http://www.demo.test/static/app.css

  # Health, pools and status
  curl -s -H 'Authorization: Bearer %s' http://%s/v1/status
  curl -s -H 'Authorization: Bearer %s' http://%s/v1/pools

Stop with Ctrl-C.
`, d.DataDir, DNSAddr, Origin1, Origin2, AdminAddr, d.Token, d.DataDir, d.DataDir,
		d.Token, AdminAddr, AdminAddr, d.Token, d.Token, AdminAddr, d.Token, AdminAddr)
}
