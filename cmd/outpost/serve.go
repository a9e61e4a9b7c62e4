package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/outpost-edge/outpost/internal/admin"
	"github.com/outpost-edge/outpost/internal/buildinfo"
	"github.com/outpost-edge/outpost/internal/cluster"
	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/datadir"
	"github.com/outpost-edge/outpost/internal/edge"
	"github.com/outpost-edge/outpost/internal/node"
	"github.com/outpost-edge/outpost/internal/telemetry"
)

func serveCommand() *command {
	return &command{
		name:    "serve",
		usage:   "--config FILE [--node NAME]",
		summary: "run an edge node from a config file (SIGHUP reloads, SIGTERM drains and exits)",
		flags: func(fs *flag.FlagSet) func([]string) int {
			path := fs.String("config", "", "config `FILE` (YAML); required")
			name := fs.String("node", "", "this node's `NAME` among the config's nodes: (default: config node: or $OUTPOST_NODE)")
			return func([]string) int {
				if *path == "" {
					fmt.Fprintln(os.Stderr, "outpost serve: --config is required")
					return 2
				}
				return serve(*path, *name, os.Stderr)
			}
		},
	}
}

func checkConfigCommand() *command {
	return &command{
		name:    "check-config",
		usage:   "FILE [--node NAME]",
		summary: "validate a config file: exit 0 when valid, 1 with every error listed",
		flags: func(fs *flag.FlagSet) func([]string) int {
			name := fs.String("node", "", "validate as node `NAME`")
			return func(args []string) int {
				// Accept flags after the file too: check-config FILE --node NAME.
				if len(args) > 1 {
					if err := fs.Parse(args[1:]); err != nil {
						return 2
					}
					args = append(args[:1], fs.Args()...)
				}
				if len(args) != 1 {
					fmt.Fprintln(os.Stderr, "usage: outpost check-config FILE [--node NAME]")
					return 2
				}
				if _, err := config.Load(args[0], *name); err != nil {
					fmt.Fprint(os.Stderr, formatLoadError(args[0], err))
					return 1
				}
				fmt.Fprintf(os.Stdout, "%s: ok\n", args[0])
				return 0
			}
		},
	}
}

func formatLoadError(path string, err error) string {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		return fmt.Sprintf("%s: %v\n", path, err)
	}
	return config.Format(err)
}

// serve runs one node until SIGINT/SIGTERM.
func serve(path, nodeName string, stderr io.Writer) int {
	// SIGHUP is taken from the start: one while the node starts
	// (`systemctl reload` just after `start`) would otherwise kill the
	// process (its default action); it is handled, as a reload, once the
	// node is up. SIGINT and SIGTERM still stop a start that hangs.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP)
	defer signal.Stop(sigs)
	cfg, err := config.Load(path, nodeName)
	if err != nil {
		fmt.Fprint(stderr, formatLoadError(path, err))
		return 1
	}
	// From here on every line goes through out, which keeps them in order
	// and gathers the access log's (log.access_buffer).
	out := telemetry.NewOutput(stderr, int(*cfg.Log.AccessBuffer), cfg.Log.AccessFlush.D())
	defer out.Flush()
	stderr = out.Direct()
	log, access := telemetry.NewLogs(out, cfg.Log.Level, cfg.Log.Format)
	// go-redis logs through the process log, not its own lines on stderr.
	redis.SetLogger(telemetry.PrintfLogger(log.With("component", "redis")))
	reg := telemetry.NewRegistry()
	// One process per data directory: claimed before anything in it is
	// opened, and only when this config keeps state there.
	var dirLock *datadir.Lock
	if cfg.UsesDataDir() {
		if dirLock, err = datadir.Acquire(cfg.DataDir); err != nil {
			fmt.Fprintf(stderr, "outpost: %v\n", err)
			return 1
		}
	}
	var lockMu sync.Mutex // reloads come from SIGHUP and the admin API
	defer func() { lockMu.Lock(); dirLock.Release(); lockMu.Unlock() }()
	// lockLater claims the data directory when a reloaded config starts
	// keeping state there (data_dir itself is restart-only).
	lockLater := func(newCfg *config.Config) error {
		lockMu.Lock()
		defer lockMu.Unlock()
		if dirLock != nil || !newCfg.UsesDataDir() {
			return nil
		}
		l, err := datadir.Acquire(cfg.DataDir)
		if err == nil {
			dirLock = l
		}
		return err
	}
	n, err := node.New(cfg, node.Options{Logger: log, AccessLog: access, Registerer: reg})
	if err != nil {
		fmt.Fprintf(stderr, "outpost: %v\n", err)
		return 1
	}
	reload := newReload(path, nodeName, n, lockLater, log)
	var ready atomic.Bool
	adm := newAdmin(cfg.Admin.Token, log, reg, reload, func() any { return nodeStatus(n) }, ready.Load)
	fan, err := peerFanout(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "outpost: %v\n", err)
		return 1
	}
	if fan != nil {
		defer fan.Close()
		if err := fan.Register(reg); err != nil {
			fmt.Fprintf(stderr, "outpost: %v\n", err)
			return 1
		}
	}
	n.MountAdmin(adm, fan)
	var targets []admin.PurgeTarget
	if c := n.Cache(); c != nil {
		targets = append(targets, admin.PurgeTarget{Node: n.Name(), Cache: c})
	}
	var relay admin.Relay // nil: this node purges only itself
	stopStream := func() {}
	if fan != nil {
		relay = fan
	}
	if cfg.UsesPurgeStream() {
		stream := purgeStream(cfg, n, targets, fan, log)
		if err := stream.Register(reg); err != nil {
			fmt.Fprintf(stderr, "outpost: %v\n", err)
			return 1
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); stream.Run(ctx) }()
		// Stopped before the node closes its Redis client.
		stopStream = sync.OnceFunc(func() { stop(); <-done })
		defer stopStream()
		relay = stream
	}
	adm.Handle("POST /v1/purge", admin.PurgeHandler(targets, relay))

	if err := admin.CheckListen(cfg.Admin.Listen, cfg.Admin.Token); err != nil {
		fmt.Fprintf(stderr, "outpost: %v\n", err)
		return 1
	}
	adminLn, err := edge.Listen(cfg.Admin.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "outpost: admin API: %v\n", err)
		return 1
	}
	if err := admin.CheckListener(adminLn, cfg.Admin.Token); err != nil {
		adminLn.Close()
		fmt.Fprintf(stderr, "outpost: %v\n", err)
		return 1
	}
	if err := n.Start(); err != nil {
		adminLn.Close()
		fmt.Fprintf(stderr, "outpost: %v\n", err)
		return 1
	}
	adminSrv := newAdminServer(adm)
	go adminSrv.Serve(adminLn)
	ready.Store(true)
	log.Info("outpost started", "version", buildinfo.Version(), "node", cfg.Node, "edge", n.Addr().String(), "admin", adminLn.Addr().String())

	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			log.Info("SIGHUP: reloading config", "path", path)
			_, _ = reload()
			continue
		}
		log.Info("shutting down", "signal", sig.String(), "deadline", n.Config().Edge.ShutdownTimeout.String())
		ready.Store(false)
		break
	}
	drain(n, sigs, log)
	stopStream()
	ctx, cancel := context.WithTimeout(context.Background(), n.Config().Edge.ShutdownTimeout.D())
	defer cancel()
	code := 0
	if err := n.Shutdown(ctx); err != nil {
		log.Warn("in-flight requests cut at the shutdown deadline", "error", err)
	}
	_ = adminSrv.Shutdown(ctx)
	log.Info("stopped")
	return code
}

// loadConfig reads the config file for a reload (a seam for tests).
var loadConfig = config.Load

// newReload returns the reload that SIGHUP and POST /v1/reload share. One
// reload runs at a time, from reading the file to applying it: two
// overlapping reloads could otherwise apply in the other order, leaving
// the older read of the file in force.
func newReload(path, nodeName string, n *node.Node, lockLater func(*config.Config) error, log *slog.Logger) admin.ReloadFunc {
	var mu sync.Mutex
	return func() (uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		newCfg, err := loadConfig(path, nodeName)
		if err != nil {
			log.Error("reload rejected; the old config stays", "errors", config.Format(err))
			return n.Generation(), err
		}
		if err := lockLater(newCfg); err != nil {
			log.Error("reload rejected; the old config stays", "error", err)
			return n.Generation(), err
		}
		gen, err := n.Apply(newCfg)
		var partial *configerr.Partial
		switch {
		case errors.As(err, &partial):
			log.Error("reload applied with errors; the new config runs except for the failed part", "generation", gen, "error", partial.Err)
		case err != nil:
			log.Error("reload failed; the old config stays", "error", err)
		}
		return gen, err
	}
}

// drain keeps the node serving for edge.shutdown_delay with its health
// endpoints answering 503, so peers' DNS and load balancers in front stop
// sending it clients before its listeners close. Another SIGINT or
// SIGTERM ends the wait at once; SIGHUP is ignored now.
func drain(n *node.Node, sigs <-chan os.Signal, log *slog.Logger) {
	n.BeginDrain()
	delay := n.Config().Edge.ShutdownDelay.D()
	if delay <= 0 {
		return
	}
	log.Info("draining: health answers 503, still serving", "for", delay.String())
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				log.Info("second signal: closing now", "signal", sig.String())
				return
			}
		}
	}
}

func nodeStatus(n *node.Node) admin.Status {
	st := n.Status()
	up := time.Since(startTime)
	return admin.Status{
		Node:       n.Name(),
		Version:    buildinfo.Version(),
		StartedAt:  startTime.UTC(),
		Uptime:     up.Round(time.Second).String(),
		UptimeSecs: up.Seconds(),
		Generation: n.Generation(),
		Extra:      st,
	}
}

var startTime = time.Now()

// peerFanout returns the purge fan-out to the other nodes that list an
// admin URL, or nil when there are none.
func peerFanout(cfg *config.Config, log *slog.Logger) (*cluster.Fanout, error) {
	if cfg.Node == "" {
		// Without knowing which entry is this node, fanning out could
		// include ourselves; an unnamed node purges only locally.
		return nil, nil
	}
	var peers []cluster.Peer
	for _, nd := range cfg.Nodes {
		if nd.Name != cfg.Node && nd.Admin != "" {
			peers = append(peers, cluster.Peer{Name: nd.Name, Admin: nd.Admin})
		}
	}
	if len(peers) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	return cluster.NewFanout(cfg.Node, peers, cfg.Admin.Token, filepath.Join(cfg.DataDir, "fanout.db"), log.With("component", "fanout"))
}

// purgeStream returns the Redis purge stream between cfg's nodes (see
// cluster.PurgeStream), applying other nodes' purges to targets and
// falling back to fan (which may be nil) when Redis cannot take one.
func purgeStream(cfg *config.Config, n *node.Node, targets []admin.PurgeTarget, fan *cluster.Fanout, log *slog.Logger) *cluster.PurgeStream {
	var peers []string
	for _, nd := range cfg.Nodes {
		if nd.Name != cfg.Node {
			peers = append(peers, nd.Name)
		}
	}
	return cluster.NewPurgeStream(n.Redis(), cfg.Node, peers, filepath.Join(cfg.DataDir, "purge-stream.pos"),
		admin.ApplyPurge(targets), fan, log.With("component", "purge-stream"))
}

// newAdmin builds the admin API with the endpoints every process has, and
// POST /v1/reload when reload is not nil.
// ready reports whether the node takes traffic: false until its listeners
// are up and again once shutdown begins, so load balancers in front of the
// node stop sending before the edge stops accepting.
func newAdmin(token string, log *slog.Logger, gatherer prometheus.Gatherer, reload admin.ReloadFunc, status admin.StatusFunc, ready func() bool) *admin.Server {
	a := admin.New(token, log.With("component", "admin"))
	a.HandlePublic("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	a.HandlePublic("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready() {
			admin.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}))
	a.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	// Profiles for operators (behind the token like everything else).
	a.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
	a.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	a.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	a.Handle("GET /v1/status", admin.JSONHandler(status))
	if reload != nil {
		a.Handle("POST /v1/reload", admin.ReloadHandler(reload))
	}
	return a
}

func newAdminServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.Background() },
	}
}
