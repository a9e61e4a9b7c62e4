package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/dns"
	"github.com/outpost-edge/outpost/internal/cluster"
)

// dnsCommand is quick mode: serve zone files without a config file, for
// checks and for comparing answers (and speed) with other servers.
func dnsCommand() *command {
	return &command{
		name:    "dns",
		usage:   "--zone FILE [--zone origin=FILE ...] [--listen ADDR] [--steer NAME --node SPEC ...]",
		summary: "serve zone files authoritatively (quick mode, no config file)",
		flags: func(fs *flag.FlagSet) func([]string) int {
			var zones, listen, steer, nodes stringList
			ednsSize := fs.Int("edns-size", dns.DefaultEDNSSize, "EDNS0 UDP payload size advertised, in bytes")
			rrl := fs.Int("rrl", 0, "response rate limit per client /24 or /56, responses per second (0 = off)")
			geo := fs.String("geo", "", "MaxMind-format country database (default: the embedded one)")
			answers := fs.Int("answers", 1, "addresses per steered answer")
			verbose := fs.Bool("v", false, "log at debug level")
			fs.Var(&zones, "zone", "zone file, or origin=FILE when the file has no absolute SOA owner (repeatable)")
			fs.Var(&listen, "listen", "address to serve on, UDP and TCP (repeatable; default 127.0.0.1:8053)")
			fs.Var(&steer, "steer", "steered name answered from the --node set (repeatable)")
			fs.Var(&nodes, "node", "edge node for steering: name,ipv4[,ipv6],lat,lon (repeatable)")
			return func(args []string) int {
				if len(args) > 0 || len(zones) == 0 {
					fmt.Fprintln(os.Stderr, "outpost dns: at least one --zone is required and no arguments are taken")
					return 2
				}
				level := slog.LevelInfo
				if *verbose {
					level = slog.LevelDebug
				}
				log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
				cfg := dns.Config{Listen: listen, EDNSSize: *ednsSize}
				if len(cfg.Listen) == 0 {
					cfg.Listen = []string{"127.0.0.1:8053"}
				}
				for _, z := range zones {
					zc := dns.ZoneConfig{File: z}
					if origin, file, ok := strings.Cut(z, "="); ok {
						zc = dns.ZoneConfig{Origin: origin, File: file}
					}
					cfg.Zones = append(cfg.Zones, zc)
				}
				for _, s := range steer {
					cfg.Steered = append(cfg.Steered, dns.SteeredName{Name: s, Answers: *answers})
				}
				cfg.Geo.Database = *geo
				cfg.Health.Disabled = true // quick mode has no health endpoints to probe
				cfg.RRL.Disabled = *rrl == 0
				cfg.RRL.ResponsesPerSecond = *rrl
				cfg.SetDefaults()
				if err := cfg.Validate(); err != nil {
					fmt.Fprint(os.Stderr, flagErrors("outpost dns", err, dnsFlagPaths))
					return 2
				}
				// Either alone does nothing: a steered name without nodes
				// is answered from the zone file as if never steered.
				if (len(steer) == 0) != (len(nodes) == 0) {
					fmt.Fprintln(os.Stderr, "outpost dns: --steer and --node go together: the steered names are answered from the --node set")
					return 2
				}
				var ns []cluster.Node
				for _, spec := range nodes {
					n, err := parseNodeSpec(spec)
					if err != nil {
						fmt.Fprintf(os.Stderr, "outpost dns: --node %q: %v\n", spec, err)
						return 2
					}
					ns = append(ns, n)
				}
				srv, err := dns.New(cfg, ns, dns.Options{Logger: log})
				if err != nil {
					fmt.Fprintf(os.Stderr, "outpost dns: %v\n", err)
					return 1
				}
				if err := srv.Start(); err != nil {
					fmt.Fprintf(os.Stderr, "outpost dns: %v\n", err)
					return 1
				}
				log.Info("serving", "listen", strings.Join(cfg.Listen, ","), "zones", strings.Join(srv.Zones(), ","))
				hup := make(chan os.Signal, 1)
				signal.Notify(hup, syscall.SIGHUP)
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				for {
					select {
					case <-hup:
						if err := srv.Reload(cfg, ns); err != nil {
							log.Error("reload", "error", err)
						} else {
							log.Info("reloaded", "zones", strings.Join(srv.Zones(), ","))
						}
						continue
					case <-ctx.Done():
					}
					break
				}
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := srv.Shutdown(sctx); err != nil {
					log.Error("shutdown", "error", err)
					return 1
				}
				return 0
			}
		},
	}
}

// dnsFlagPaths names the flag behind each part of the quick-mode config.
var dnsFlagPaths = []flagPath{
	{"listen", "--listen"},
	{"edns_size", "--edns-size"},
	{"zones", "--zone"},
	{"steered.answers", "--answers"},
	{"steered", "--steer"},
	{"geo", "--geo"},
	{"rrl", "--rrl"},
}

// parseNodeSpec reads "name,ipv4[,ipv6],lat,lon".
func parseNodeSpec(s string) (cluster.Node, error) {
	f := strings.Split(s, ",")
	if len(f) != 4 && len(f) != 5 {
		return cluster.Node{}, fmt.Errorf("want name,ipv4[,ipv6],lat,lon")
	}
	n := cluster.Node{Name: f[0], Weight: 1}
	var err error
	if n.IPv4, err = netip.ParseAddr(f[1]); err != nil {
		return n, err
	}
	if len(f) == 5 {
		if n.IPv6, err = netip.ParseAddr(f[2]); err != nil {
			return n, err
		}
		f = append(f[:2], f[3:]...)
	}
	if n.Lat, err = strconv.ParseFloat(f[2], 64); err != nil {
		return n, err
	}
	if n.Lon, err = strconv.ParseFloat(f[3], 64); err != nil {
		return n, err
	}
	return n, n.Validate()
}
