package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-edge/outpost/internal/admin"
	"github.com/outpost-edge/outpost/internal/config"
	"github.com/outpost-edge/outpost/internal/edge"
	"github.com/outpost-edge/outpost/internal/node"
	"github.com/outpost-edge/outpost/internal/telemetry"
)

func proxyCommand() *command {
	return &command{
		name:    "proxy",
		usage:   "--listen ADDR --origin URL [--origin URL ...] [--cache-dir DIR] [--policy NAME] [--health-path PATH] [--no-cache]",
		summary: "run a caching, load-balancing reverse proxy with no config file (like varnishd -b)",
		flags: func(fs *flag.FlagSet) func([]string) int {
			var o proxyOpts
			fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "listen `ADDR` (host:port)")
			fs.Var(&o.origins, "origin", "origin `URL` (repeatable: several origins are load balanced)")
			fs.StringVar(&o.cacheDir, "cache-dir", "", "cache `DIR` (default: a directory under $TMPDIR named after the listen port)")
			fs.StringVar(&o.cacheSize, "cache-size", "1GiB", "cache `SIZE` limit")
			fs.BoolVar(&o.noCache, "no-cache", false, "do not cache: pure load-balancing proxy")
			fs.StringVar(&o.policy, "policy", "round_robin", "balancing `NAME`: round_robin, least_connections, ip_hash, consistent_hash, p2c")
			fs.StringVar(&o.healthPath, "health-path", "", "actively health-check origins with GET `PATH` (default: passive checks only)")
			fs.StringVar(&o.adminAddr, "admin", "", "also serve the admin API (purge, pools, metrics) on `ADDR`, e.g. 127.0.0.1:9091")
			fs.StringVar(&o.token, "token", os.Getenv("OUTPOST_ADMIN_TOKEN"), "admin bearer `TOKEN` (default $OUTPOST_ADMIN_TOKEN; required off loopback)")
			fs.BoolVar(&o.accessLog, "access-log", true, "write a JSON access log line per request to stderr")
			fs.BoolVar(&o.fastHTTP1, "fast-http1", true, "serve HTTP/1.1 with Outpost's own server (false: net/http serves everything; config edge.fast_http1)")
			fs.BoolVar(&o.sendfile, "sendfile", true, "send cached files with sendfile(2) (false: copy them through a buffer, as nginx's sendfile off; config edge.sendfile)")
			fs.StringVar(&o.notsentLowat, "notsent-lowat", fmt.Sprintf("%dKiB", edge.DefaultNotsentLowat>>10), "keep at most `SIZE` of a response queued in the kernel beyond what TCP sent (TCP_NOTSENT_LOWAT; 0: the kernel's setting; config edge.notsent_lowat)")
			return func([]string) int { return runProxy(o) }
		},
	}
}

type proxyOpts struct {
	listen, cacheDir, cacheSize, policy, healthPath, adminAddr, token string
	notsentLowat                                                      string
	origins                                                           stringList
	noCache, accessLog, fastHTTP1, sendfile                           bool
}

// proxyConfig turns the flags into a regular config, so quick mode runs
// exactly the code (and validation) a config file would.
func proxyConfig(o proxyOpts) ([]byte, error) {
	if len(o.origins) == 0 {
		return nil, fmt.Errorf("at least one --origin is required")
	}
	backends := make([]map[string]any, len(o.origins))
	for i, u := range o.origins {
		backends[i] = map[string]any{"url": u}
	}
	pool := map[string]any{"policy": o.policy, "backends": backends}
	if o.healthPath != "" {
		pool["health"] = map[string]any{"path": o.healthPath, "interval": "2s", "rise": 2, "fall": 2}
	}
	route := map[string]any{"name": "default", "pool": "origin"}
	doc := map[string]any{
		"node":     "proxy",
		"log":      map[string]any{"level": "info"},
		"edge":     map[string]any{"listen": o.listen, "access_log": o.accessLog, "fast_http1": o.fastHTTP1, "sendfile": o.sendfile, "notsent_lowat": o.notsentLowat},
		"pools":    map[string]any{"origin": pool},
		"routes":   []any{route},
		"data_dir": filepath.Join(os.TempDir(), "outpost-proxy"),
	}
	if o.adminAddr != "" {
		doc["admin"] = map[string]any{"listen": o.adminAddr, "token": o.token}
	}
	if !o.noCache {
		dir := o.cacheDir
		if dir == "" {
			port := o.listen[strings.LastIndexByte(o.listen, ':')+1:]
			dir = filepath.Join(os.TempDir(), "outpost-cache-"+port)
		}
		doc["cache"] = map[string]any{"dir": dir, "max_size": o.cacheSize}
		route["cache"] = map[string]any{}
	}
	return yaml.Marshal(doc)
}

// proxyFlagPaths names the flag behind each part of proxyConfig's document.
var proxyFlagPaths = []flagPath{
	{"edge.listen", "--listen"},
	{"pools.origin.backends", "--origin"},
	{"pools.origin.policy", "--policy"},
	{"pools.origin.health", "--health-path"},
	{"cache.dir", "--cache-dir"},
	{"cache", "--cache-size"},
	{"admin.listen", "--admin"},
	{"admin.token", "--token"},
}

func runProxy(o proxyOpts) int {
	data, err := proxyConfig(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "outpost proxy: %v\n", err)
		return 2
	}
	cfg, err := config.Parse("outpost proxy flags", data, "", os.LookupEnv)
	if err != nil {
		fmt.Fprint(os.Stderr, flagErrors("outpost proxy", err, proxyFlagPaths))
		return 2
	}
	out := telemetry.NewOutput(os.Stderr, int(*cfg.Log.AccessBuffer), cfg.Log.AccessFlush.D())
	defer out.Flush()
	stderr := out.Direct() // in order with the log's lines
	log, access := telemetry.NewLogs(out, cfg.Log.Level, cfg.Log.Format)
	reg := telemetry.NewRegistry()
	n, err := node.New(cfg, node.Options{Logger: log, AccessLog: access, Registerer: reg})
	if err != nil {
		fmt.Fprintf(stderr, "outpost proxy: %v\n", err)
		return 1
	}
	if err := n.Start(); err != nil {
		fmt.Fprintf(stderr, "outpost proxy: %v\n", err)
		return 1
	}
	var adminSrv interface{ Shutdown(context.Context) error }
	if o.adminAddr != "" {
		if err := admin.CheckListen(o.adminAddr, o.token); err != nil {
			fmt.Fprintf(stderr, "outpost proxy: %v\n", err)
			return 1
		}
		// No /v1/reload: there is no file to re-read, and answering
		// "reloaded" would tell an operator a change took effect.
		adm := newAdmin(o.token, log, reg, nil, func() any { return nodeStatus(n) }, func() bool { return true })
		n.MountAdmin(adm, nil)
		var targets []admin.PurgeTarget
		if c := n.Cache(); c != nil {
			targets = append(targets, admin.PurgeTarget{Node: n.Name(), Cache: c})
		}
		adm.Handle("POST /v1/purge", admin.PurgeHandler(targets, nil))
		ln, err := edge.Listen(o.adminAddr)
		if err != nil {
			fmt.Fprintf(stderr, "outpost proxy: admin API: %v\n", err)
			return 1
		}
		if err := admin.CheckListener(ln, o.token); err != nil {
			ln.Close()
			fmt.Fprintf(stderr, "outpost proxy: %v\n", err)
			return 1
		}
		srv := newAdminServer(adm)
		go srv.Serve(ln)
		adminSrv = srv
	}
	log.Info("outpost proxy started", "listen", n.Addr().String(), "origins", []string(o.origins), "cache", !o.noCache, "policy", o.policy)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.Shutdown(ctx)
	if adminSrv != nil {
		_ = adminSrv.Shutdown(ctx)
	}
	return 0
}
