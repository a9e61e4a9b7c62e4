package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/net/netutil"

	"github.com/outpost-edge/outpost/internal/cluster"
)

// Options are the long-lived dependencies of a Server.
type Options struct {
	// Logger receives operational logs; a "component" attr is added.
	Logger *slog.Logger
	// Metrics from NewMetrics; a private registry is used when nil.
	Metrics *Metrics
	// HTTPClient probes node health; default: a client without proxies
	// or keep-alives.
	HTTPClient *http.Client
	// Now is the clock of RRL and NOTIFY/TSIG timestamps; default time.Now.
	Now func() time.Time
	// Rand returns a uniform int in [0, n) for weighted tie breaks between
	// equally near nodes; default math/rand/v2.IntN.
	Rand func(n int) int
	// Geo overrides the country database (tests); default: opened from
	// Config.Geo.Database or the embedded database.
	Geo CountryLocator
	// RecordsFile is where runtime records (AddRecord, the admin API) and
	// the serial bumps they cause are saved before a change is reported,
	// so both survive a restart or crash; its directory is created. The
	// node sets <data_dir>/dns-records.json. Empty keeps runtime records
	// in memory only, lost when the process ends: tests and quick mode.
	RecordsFile string
}

// maxTCPConns bounds concurrent TCP connections per listener; further
// connections wait in the kernel backlog.
const maxTCPConns = 1024

// Server is an authoritative DNS server. New builds it, Start or Serve
// begins answering, Reload swaps config and zones atomically, Shutdown ends.
type Server struct {
	log     *slog.Logger
	metrics *Metrics
	health  *Health
	now     func() time.Time
	rand    func(int) int
	geoOpt  CountryLocator
	rrl     *rrl
	tsig    *tsigKeys

	snap atomic.Pointer[snapshot]

	mu      sync.Mutex // guards everything below
	cfg     Config
	nodes   []cluster.Node
	sources map[string]*zoneSource // by origin
	overlay map[string][]mdns.RR   // runtime records by origin
	bumps   map[string]uint32      // serial increments by origin
	store   *recordStore           // saves overlay and bumps; nil: memory only
	kept    map[string][]string    // saved records not served (unparsable, conflicting), by origin
	geo     *GeoDB
	geoPath string
	servers []*mdns.Server
	udp     []*udpServer
	started bool
	closed  bool

	bgCtx    context.Context // cancelled by Shutdown; bounds NOTIFY sends
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

// zoneSource is the last good parsed content of one configured zone.
type zoneSource struct {
	origin string
	file   string
	rrs    []mdns.RR // file and config records
	inline bool      // no file: a missing SOA is synthesized
}

// snapshot is everything the answer path reads, swapped atomically.
type snapshot struct {
	zones    map[string]*Zone
	steer    *steering
	ednsSize uint16
	xfr      *xfrPolicy
	// cache and steeredWire serve the UDP fast path (fastpath.go).
	cache       *answerCache
	steeredWire map[string]*steeredName
}

// withZones returns a copy of sn serving zones in place of the zones of
// the same origins, with a fresh answer cache.
func (sn *snapshot) withZones(zones ...*Zone) *snapshot {
	c := *sn
	c.zones = make(map[string]*Zone, len(sn.zones))
	for k, v := range sn.zones {
		c.zones[k] = v
	}
	for _, z := range zones {
		c.zones[z.origin] = z
	}
	c.cache, c.steeredWire = newAnswerCache(), indexSteered(c.zones)
	return &c
}

// findZone returns the zone holding lname (lower case), the longest suffix.
func (sn *snapshot) findZone(lname string) *Zone {
	for off, end := 0, false; !end; off, end = mdns.NextLabel(lname, off) {
		if z := sn.zones[lname[off:]]; z != nil {
			return z
		}
	}
	return sn.zones["."]
}

// New builds a server from cfg (SetDefaults and Validate already applied)
// and the cluster's nodes. A broken zone file is an error here.
func New(cfg Config, nodes []cluster.Node, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "dns")
	m := opts.Metrics
	if m == nil {
		var err error
		if m, err = NewMetrics(nil); err != nil {
			return nil, err
		}
	}
	s := &Server{
		log: log, metrics: m, now: opts.Now, rand: opts.Rand, geoOpt: opts.Geo,
		sources: map[string]*zoneSource{}, overlay: map[string][]mdns.RR{}, bumps: map[string]uint32{},
		kept: map[string][]string{}, tsig: &tsigKeys{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.IntN
	}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	s.health = NewHealth(cfg.Health, log, m, opts.HTTPClient)
	s.rrl = newRRL(cfg.RRL, s.now)
	var saved *storeFile
	if opts.RecordsFile != "" {
		st, f, err := openRecordStore(opts.RecordsFile, log, s.now)
		if err != nil {
			s.bgCancel()
			return nil, fmt.Errorf("dns: %w", err)
		}
		s.store, saved = st, f
		// Bumps go in before the first build so every zone starts at the
		// serial it was last served with; records follow in restoreLocked.
		for origin, z := range f.Zones {
			s.bumps[origin] = z.Bump
		}
	}
	if err := s.Reload(cfg, nodes); err != nil {
		s.bgCancel()
		return nil, err
	}
	if saved != nil {
		s.mu.Lock()
		s.restoreLocked(saved)
		s.mu.Unlock()
	}
	return s, nil
}

// Health returns the node health checker (a HealthView for status pages).
func (s *Server) Health() *Health { return s.health }

// Reload applies a new config and node set. Zones are re-read; a zone that
// fails to load keeps its previous content and the error (file:line) is
// returned after everything else has been applied. Runtime records and
// metrics survive.
func (s *Server) Reload(cfg Config, nodes []cluster.Node) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	geo := s.geoOpt
	if geo == nil {
		if s.geo == nil || s.geoPath != cfg.Geo.Database {
			g, err := OpenGeoDB(cfg.Geo.Database)
			if err != nil {
				errs = append(errs, err)
			} else {
				if s.geo != nil {
					// In-flight queries may still hold the old steering; the
					// database is memory-mapped or in memory, and closing
					// only unmaps files. Keep it open until the GC frees it.
					s.log.Info("geo database changed", "path", cfg.Geo.Database)
				}
				s.geo, s.geoPath = g, cfg.Geo.Database
			}
		}
		if s.geo != nil {
			geo = s.geo
		}
	}
	s.health.Update(cfg.Health, nodes)
	s.rrl.configure(cfg.RRL)
	if err := s.tsig.set(cfg.Transfer.Keys); err != nil {
		errs = append(errs, err)
	}

	sources, steeredBy, loadErrs := s.loadLocked(cfg, nodes, func(origin string, err error) {
		s.log.Error("zone not reloaded, serving the previous version", "zone", origin, "error", err)
	})
	errs = append(errs, loadErrs...)
	steer := newSteering(nodes, cfg.Geo.Overrides, geo, s.health, s.metrics, s.rand)
	old := s.snap.Load()
	snap := &snapshot{
		zones:    map[string]*Zone{},
		steer:    steer,
		ednsSize: uint16(cfg.EDNSSize),
		xfr:      newXFRPolicy(cfg.Transfer),
	}
	var changed []string
	for origin, src := range sources {
		var prev *Zone
		if old != nil {
			prev = old.zones[origin]
		}
		z, err := s.buildLocked(src, steeredBy[origin], prev)
		if err != nil {
			errs = append(errs, fmt.Errorf("zone %s: %w", origin, err))
			if prev != nil {
				if prevSrc := s.sources[origin]; prevSrc != nil {
					sources[origin] = prevSrc
					if z2, err2 := s.buildLocked(prevSrc, steeredBy[origin], prev); err2 == nil {
						snap.zones[origin] = z2
						continue
					}
				}
				snap.zones[origin] = prev
			}
			continue
		}
		snap.zones[origin] = z
		if prev == nil || zoneChanged(prev, z) {
			changed = append(changed, origin)
		}
	}
	s.cfg, s.nodes, s.sources = cfg, nodes, sources
	snap.cache, snap.steeredWire = newAnswerCache(), indexSteered(snap.zones)
	s.snap.Store(snap)
	if old != nil {
		for _, origin := range changed {
			s.notifyLocked(origin)
		}
	}
	return errors.Join(errs...)
}

// loadLocked reads cfg's zone files and records and places its steered
// names, changing nothing: Reload and Check share it. A zone that fails to
// load is replaced by its previous version, when there is one, and kept is
// told (kept may be nil); its steered names still find their zone.
func (s *Server) loadLocked(cfg Config, nodes []cluster.Node, kept func(origin string, err error)) (
	sources map[string]*zoneSource, steeredBy map[string][]*steeredName, errs []error) {
	sources = map[string]*zoneSource{}
	for i, zc := range cfg.Zones {
		src, err := loadZoneSource(zc)
		if err != nil {
			if old := s.oldSource(zc); old != nil {
				if kept != nil {
					kept(old.origin, err)
				}
				sources[old.origin] = old
			}
			errs = append(errs, fmt.Errorf("zones[%d]: %w", i, err))
			continue
		}
		sources[src.origin] = src
	}
	steeredBy = map[string][]*steeredName{}
	for _, sc := range cfg.Steered {
		sn := buildSteered(sc, nodes)
		origin := longestOrigin(sources, sn.name)
		if origin == "" {
			errs = append(errs, fmt.Errorf("steered name %s is not inside any served zone", sn.name))
			continue
		}
		steeredBy[origin] = append(steeredBy[origin], sn)
	}
	return sources, steeredBy, errs
}

// oldSource finds the previous content of a zone config entry.
func (s *Server) oldSource(zc ZoneConfig) *zoneSource {
	if zc.Origin != "" {
		return s.sources[canonical(zc.Origin)]
	}
	for _, src := range s.sources {
		if zc.File != "" && src.file == zc.File {
			return src
		}
	}
	return nil
}

func longestOrigin(sources map[string]*zoneSource, name string) string {
	for off, end := 0, false; !end; off, end = mdns.NextLabel(name, off) {
		if _, ok := sources[name[off:]]; ok {
			return name[off:]
		}
	}
	if _, ok := sources["."]; ok {
		return "."
	}
	return ""
}

// loadZoneSource reads a zone's file and config records.
func loadZoneSource(zc ZoneConfig) (*zoneSource, error) {
	src := &zoneSource{file: zc.File, inline: zc.File == ""}
	if zc.Origin != "" {
		src.origin = canonical(zc.Origin)
	}
	if zc.File != "" {
		origin, rrs, err := readZoneFile(zc.File, src.origin)
		if err != nil {
			return nil, err
		}
		src.origin, src.rrs = canonical(origin), rrs
	}
	for j, r := range zc.Records {
		rr, err := parseRR(r, src.origin)
		if err != nil {
			return nil, fmt.Errorf("records[%d]: %w", j, err)
		}
		src.rrs = append(src.rrs, rr)
	}
	return src, nil
}

// buildLocked builds the served zone from its source and runtime records.
// The serial never goes backwards: when content changed but the file
// serial did not move past the served one, the bump carries it forward,
// and the bump is saved (with a records file) before the zone is served,
// so a restart serves the same serial.
func (s *Server) buildLocked(src *zoneSource, steered []*steeredName, prev *Zone) (*Zone, error) {
	rrs := s.recordsLocked(src)
	bump := s.bumps[src.origin]
	z, err := buildZone(src.origin, rrs, steered, bump, src.inline)
	if err != nil {
		return nil, err
	}
	if prev != nil && zoneChanged(prev, z) && !serialAfter(z.soa.Serial, prev.soa.Serial) {
		old := bump
		bump += prev.soa.Serial - z.soa.Serial + 1
		s.bumps[src.origin] = bump
		if err := s.saveLocked(); err != nil {
			s.bumps[src.origin] = old
			return nil, err
		}
		return buildZone(src.origin, rrs, steered, bump, src.inline)
	}
	return z, nil
}

// recordsLocked is what a zone is built from: its source's records and
// the runtime records added to it.
func (s *Server) recordsLocked(src *zoneSource) []mdns.RR {
	return append(append([]mdns.RR(nil), src.rrs...), s.overlay[src.origin]...)
}

// serialAfter compares SOA serials in RFC 1982 arithmetic.
func serialAfter(a, b uint32) bool { return a != b && int32(a-b) > 0 }

// zoneChanged reports whether two versions differ in anything but the
// SOA serial.
func zoneChanged(a, b *Zone) bool {
	if len(a.records) != len(b.records) {
		return true
	}
	for i := range a.records {
		ra, rb := a.records[i], b.records[i]
		if i == 0 {
			sa, sb := *ra.(*mdns.SOA), *rb.(*mdns.SOA)
			sa.Serial, sb.Serial = 0, 0
			if !mdns.IsDuplicate(&sa, &sb) || sa.Hdr.Ttl != sb.Hdr.Ttl {
				return true
			}
			continue
		}
		if !mdns.IsDuplicate(ra, rb) || ra.Header().Ttl != rb.Header().Ttl {
			return true
		}
	}
	return false
}

// Start listens on every Config.Listen address, UDP and TCP, and serves.
func (s *Server) Start() error {
	s.mu.Lock()
	addrs := append([]string(nil), s.cfg.Listen...)
	s.mu.Unlock()
	var (
		pcs []net.PacketConn
		lns []net.Listener
	)
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, a := range addrs {
		upcs, err := listenUDP(a)
		if err != nil {
			closeAll()
			return fmt.Errorf("dns: listen udp %s: %w", a, err)
		}
		pcs = append(pcs, upcs...)
		ln, err := net.Listen("tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("dns: listen tcp %s: %w", a, err)
		}
		lns = append(lns, ln)
	}
	if err := s.Serve(pcs, lns); err != nil {
		closeAll()
		return err
	}
	return nil
}

// Serve answers on already opened sockets (tests and the demo bind
// specific addresses) and starts health probes. It returns once serving.
// The server owns the sockets from here on and closes them on Shutdown.
func (s *Server) Serve(pcs []net.PacketConn, lns []net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns: server is shut down")
	}
	idle := s.cfg.TCPIdleTimeout.D()
	read := s.cfg.TCPReadTimeout.D()
	var started []chan error
	launch := func(srv *mdns.Server) {
		ch := make(chan error, 1)
		srv.NotifyStartedFunc = func() { ch <- nil }
		s.servers = append(s.servers, srv)
		started = append(started, ch)
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				select {
				case ch <- err:
				default:
				}
				s.log.Error("dns listener stopped", "error", err)
			}
		}()
	}
	nUDP := 0
	for _, pc := range pcs {
		if _, ok := pc.(*net.UDPConn); ok {
			nUDP++
		}
	}
	// Batch workers per UDP socket: GOMAXPROCS in all, at least one each.
	perSocket := 1
	if nUDP > 0 {
		perSocket = (runtime.GOMAXPROCS(0) + nUDP - 1) / nUDP
	}
	for _, pc := range pcs {
		if uc, ok := pc.(*net.UDPConn); ok {
			// Bursts from busy resolvers outrun the default ~200 KiB
			// buffers; the kernel caps these at net.core.[rw]mem_max.
			_ = uc.SetReadBuffer(4 << 20)
			_ = uc.SetWriteBuffer(4 << 20)
			s.udp = append(s.udp, s.serveUDP(uc, perSocket))
			continue
		}
		// Other PacketConns (wrappers) go through miekg/dns's generic path.
		launch(&mdns.Server{PacketConn: pc, Handler: s, TsigProvider: s.tsig, UDPSize: 65535,
			ReadTimeout: read, MsgAcceptFunc: acceptFunc})
	}
	for _, ln := range lns {
		launch(&mdns.Server{Listener: netutil.LimitListener(writeDeadlineListener{&backoffListener{Listener: ln}, read}, maxTCPConns), Handler: s, TsigProvider: s.tsig,
			ReadTimeout: read, WriteTimeout: read, IdleTimeout: func() time.Duration { return idle },
			MaxTCPQueries: -1, MsgAcceptFunc: acceptFunc})
	}
	for _, ch := range started {
		if err := <-ch; err != nil {
			return fmt.Errorf("dns: serve: %w", err)
		}
	}
	if !s.started {
		s.started = true
		s.health.Start()
		// As BIND and Knot do: tell secondaries at startup, so they catch
		// up with zone files changed while this server was down.
		for origin := range s.snap.Load().zones {
			s.notifyLocked(origin)
		}
	}
	return nil
}

// acceptFunc is miekg/dns's default filter, except that it lets NOTIFY
// and other opcodes through to the handler (which answers NOTIMP with the
// question echoed) and drops nothing but responses.
func acceptFunc(dh mdns.Header) mdns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 { // QR: never answer a response
		return mdns.MsgIgnore
	}
	opcode := int(dh.Bits>>11) & 0xF
	if opcode != mdns.OpcodeQuery {
		// Not MsgRejectNotImplemented: miekg/dns would answer that over
		// TCP with the header alone, without the question.
		return mdns.MsgAccept
	}
	// A question count other than 1 is FORMERR from the handler, which
	// (unlike miekg/dns's reject) echoes the OPT (RFC 6891 §6.1.1).
	if dh.Ancount > 0 || dh.Nscount > 1 || dh.Arcount > 2 {
		return mdns.MsgReject
	}
	return mdns.MsgAccept
}

// Shutdown stops listening, waits for in-flight queries (until ctx ends),
// stops health probes and pending NOTIFYs.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers, udp := s.servers, s.udp
	s.servers, s.udp = nil, nil
	s.closed = true
	s.mu.Unlock()
	var errs []error
	for _, u := range udp {
		if err := u.shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.health.Stop()
	s.bgCancel()
	s.bg.Wait()
	return errors.Join(errs...)
}
