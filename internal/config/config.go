// Package config loads the node's one YAML file: strictly (unknown keys are
// errors), with ${ENV_VAR} expansion for secrets, defaults and validation
// delegated to each package's own section, and every error pointing at
// file, line and field.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-edge/outpost/internal/admin"
	"github.com/outpost-edge/outpost/internal/cluster"
	"github.com/outpost-edge/outpost/internal/configerr"
	"github.com/outpost-edge/outpost/internal/edge"
	"github.com/outpost-edge/outpost/internal/units"
)

// Config is the whole node configuration. Every node of a cluster reads the
// same file; --node (or `node:`) says which entry of `nodes:` is this one.
type Config struct {
	// Node names this node among `nodes:`. --node overrides it; OUTPOST_NODE
	// is used when neither is given.
	Node string `yaml:"node"`
	// DataDir holds the cache, keys, certificates and other state. Default "/var/lib/outpost".
	DataDir string `yaml:"data_dir"`
	// Log configures the process log.
	Log LogConfig `yaml:"log"`
	// Nodes lists every edge node of the cluster (for DNS steering, health
	// probes, purge fan-out).
	Nodes []cluster.Node `yaml:"nodes"`
	// Edge is the HTTP listener.
	Edge edge.Config `yaml:"edge"`
	// Admin is the operator API.
	Admin admin.Config `yaml:"admin"`
	// Routes map host + path prefix to upstreams, with optional cache and
	// gateway policy.
	Routes []Route `yaml:"routes"`
	// Redis, when addr is set, is shared cluster state (global rate limits, ...).
	Redis RedisConfig `yaml:"redis"`

	Sections `yaml:",inline"`
}

// LogConfig configures the process log.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or text. Default json.
	Format string `yaml:"format"`
	// AccessBuffer gathers up to this much of the access log before
	// writing it (see telemetry.Output); 0 writes each line at once.
	// Default 64KiB.
	AccessBuffer *units.Size `yaml:"access_buffer"`
	// AccessFlush is the longest an access line waits in the buffer.
	// Default 1s.
	AccessFlush units.Duration `yaml:"access_flush"`
}

// RedisConfig points at an optional Redis server.
type RedisConfig struct {
	// Addr is host:port; empty disables Redis.
	Addr string `yaml:"addr"`
	// Password for AUTH; use ${ENV_VAR}.
	Password string `yaml:"password"`
	// DB number. Default 0.
	DB int `yaml:"db"`
	// PurgeStream carries purges between the nodes through a Redis stream
	// (DESIGN §4), so a node that was offline catches up from Redis
	// whether or not the node that took the purge is up. Default true;
	// false keeps purges on the admin API fan-out. Only with addr set, a
	// named node and other nodes listed.
	PurgeStream *bool `yaml:"purge_stream"`
}

// UsesPurgeStream reports whether purges travel through the Redis stream.
func (c *Config) UsesPurgeStream() bool {
	if c.Redis.Addr == "" || c.Node == "" || (c.Redis.PurgeStream != nil && !*c.Redis.PurgeStream) {
		return false
	}
	for _, n := range c.Nodes {
		if n.Name != c.Node {
			return true
		}
	}
	return false
}

// Route is one `routes:` entry: the edge's match and upstream, plus the
// optional blocks owned by the cache and the gateway.
type Route struct {
	edge.Route    `yaml:",inline"`
	RouteSections `yaml:",inline"`
}

// SetDefaults fills unset fields everywhere.
func (c *Config) SetDefaults() {
	if c.DataDir == "" {
		c.DataDir = "/var/lib/outpost"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.AccessBuffer == nil {
		b := units.Size(64 << 10)
		c.Log.AccessBuffer = &b
	}
	if c.Log.AccessFlush == 0 {
		c.Log.AccessFlush = units.Duration(time.Second)
	}
	c.Edge.SetDefaults()
	c.Admin.SetDefaults()
	for i := range c.Nodes {
		if c.Nodes[i].Weight == 0 {
			c.Nodes[i].Weight = 1
		}
	}
	for i := range c.Routes {
		c.Routes[i].Route.SetDefaults()
	}
	// The path other nodes' DNS probes: the edge's own endpoint, unless
	// dns.health.path names another (one a route serves, say, so a node
	// whose origin path fails leaves DNS). Read before the DNS section's
	// defaults fill in theirs.
	healthPath := edge.HealthPath
	if c.DNS != nil && c.DNS.Health.Path != "" {
		healthPath = c.DNS.Health.Path
	}
	c.sectionDefaults()
	port := c.Edge.Listen[strings.LastIndexByte(c.Edge.Listen, ':')+1:]
	for i := range c.Nodes {
		n := &c.Nodes[i]
		// An IPv6-only node gets the same URL on its IPv6 address: left
		// empty, DNS would probe port 80, which the edge does not answer
		// itself.
		addr := n.IPv4
		if !addr.IsValid() {
			addr = n.IPv6
		}
		if n.Health == "" && addr.IsValid() {
			n.Health = (&url.URL{Scheme: "http", Host: net.JoinHostPort(addr.String(), port), Path: healthPath}).String()
		}
	}
}

// Validate checks everything, collecting all errors.
func (c *Config) Validate() error {
	var l configerr.List
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		l.Addf("log.level", "unknown level %q (want debug, info, warn, error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		l.Addf("log.format", "unknown format %q (want json, text)", c.Log.Format)
	}
	if b := c.Log.AccessBuffer; b != nil && (*b < 0 || *b > 16<<20) {
		l.Addf("log.access_buffer", "want 0 (off) to 16MiB, got %d", *b)
	}
	if f := c.Log.AccessFlush; f < 0 || f > units.Duration(time.Minute) {
		l.Addf("log.access_flush", "want up to 1m, got %s", f)
	}
	names := map[string]bool{}
	// Two nodes on one address would share a health URL and steered
	// answers: probing one probes the other.
	addrs := map[netip.Addr]int{}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		p := fmt.Sprintf("nodes[%d]", i)
		l.Merge(p, n.Validate())
		if names[n.Name] {
			l.Addf(p+".name", "duplicate node name %q", n.Name)
		}
		names[n.Name] = true
		for _, a := range []struct {
			key  string
			addr netip.Addr
		}{{"ipv4", n.IPv4}, {"ipv6", n.IPv6}} {
			if !a.addr.IsValid() {
				continue
			}
			if j, dup := addrs[a.addr]; dup {
				l.Addf(p+"."+a.key, "%s is also nodes[%d] (%s): each node needs its own address", a.addr, j, c.Nodes[j].Name)
				continue
			}
			addrs[a.addr] = i
		}
	}
	if c.Node != "" && len(c.Nodes) > 0 && !names[c.Node] {
		l.Addf("node", "unknown node %q (want one of the names under nodes:)", c.Node)
	}
	l.Merge("edge", c.Edge.Validate())
	l.Merge("admin", c.Admin.Validate())
	pools := c.poolNames()
	routeNames := map[string]bool{}
	type match struct{ host, prefix string }
	matches := map[match]int{}
	for i := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		r := &c.Routes[i]
		l.Merge(p, r.Route.Validate(pools))
		if r.Name != "" && routeNames[r.Name] {
			l.Addf(p+".name", "duplicate route name %q", r.Name)
		}
		routeNames[r.Name] = true
		r.validateSections(p, &l)
		// Of two routes with the same host and path prefix only one can
		// ever match: the other is a mistake (a copied block, a typo).
		if len(r.Hosts) == 0 {
			k := match{"", r.PathPrefix}
			if j, dup := matches[k]; dup {
				l.Addf(p+".path_prefix", "any host with path_prefix %q is already routes[%d] (%s): this route would never get it", r.PathPrefix, j, c.Routes[j].Name)
			} else {
				matches[k] = i
			}
		}
		for h, host := range r.Hosts {
			k := match{strings.TrimSuffix(strings.ToLower(host), "."), r.PathPrefix}
			if j, dup := matches[k]; dup && j != i {
				l.Addf(fmt.Sprintf("%s.hosts[%d]", p, h), "host %q with path_prefix %q is already routes[%d] (%s): this route would never get it", host, r.PathPrefix, j, c.Routes[j].Name)
			} else if !dup {
				matches[k] = i
			}
		}
	}
	if c.Redis.DB < 0 {
		l.Addf("redis.db", "must not be negative, got %d", c.Redis.DB)
	}
	if c.Redis.Addr != "" && !units.ValidHostPort(c.Redis.Addr) {
		l.Addf("redis.addr", "want host:port, got %q", c.Redis.Addr)
	}
	if c.Gateway.Redis.Enabled && c.Redis.Addr == "" {
		l.Addf("gateway.redis.enabled", "global rate limits need a Redis server: set redis.addr")
	}
	if c.TLS.Enabled && c.TLS.Redis.Enabled && c.Redis.Addr == "" {
		l.Addf("tls.redis.enabled", "shared certificate storage needs a Redis server: set redis.addr")
	}
	c.validateSections(&l)
	return l.Err()
}

// SelfNode returns this node's entry, if the cluster lists one.
func (c *Config) SelfNode() (cluster.Node, bool) {
	for _, n := range c.Nodes {
		if n.Name == c.Node {
			return n, true
		}
	}
	return cluster.Node{}, false
}

// MaxFileSize caps the config file: a bigger one (or an endless one such
// as /dev/zero given by mistake) is refused after reading this much,
// rather than read into memory whole.
const MaxFileSize = 8 << 20

// maxAliasNodes caps how many YAML nodes aliases may add to the document
// once expanded: each `*ref` stands for its anchor's whole subtree, so a
// few lines of nested aliases ("billion laughs") would otherwise stand for
// billions of nodes to check and decode.
const maxAliasNodes = 100_000

// Load reads, decodes, defaults and validates the file at path. node, when
// not empty, overrides `node:`. Errors carry file:line: field.
func Load(path, node string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s: is a directory, want a YAML file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	return Parse(filepath.Base(path), data, node, os.LookupEnv)
}

// Parse is Load on bytes; name labels errors, lookup resolves ${VARS}.
func Parse(name string, data []byte, node string, lookup func(string) (string, bool)) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, errors.Join(&configerr.FieldError{File: name,
			Msg: fmt.Sprintf("file is larger than %d MiB: not a config file", MaxFileSize>>20)})
	}
	d := newDecoder(name, lookup)
	var root yaml.Node
	yd := yaml.NewDecoder(bytes.NewReader(data))
	if err := yd.Decode(&root); err != nil && err != io.EOF {
		return nil, errors.Join(yamlError(name, data, err))
	}
	// A second document ("---") would be silently ignored: refuse it, and
	// look no further than its start.
	var extra yaml.Node
	if err := yd.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, errors.Join(yamlError(name, data, err))
		}
		return nil, errors.Join(&configerr.FieldError{File: name, Line: extra.Line,
			Msg: "a second YAML document (after ---): the file must hold one"})
	}
	if extraNodes(&root) > maxAliasNodes {
		return nil, errors.Join(&configerr.FieldError{File: name, Line: 1,
			Msg: fmt.Sprintf("aliases expand to more than %d extra nodes (nested *references?)", maxAliasNodes)})
	}
	cfg := &Config{}
	if !d.decode(&root, cfg) {
		return nil, d.redact(d.errs.Err())
	}
	if node != "" {
		cfg.Node = node
	} else if env, ok := d.lookup("OUTPOST_NODE"); ok && env != "" && cfg.Node == "" {
		cfg.Node = env
	}
	cfg.SetDefaults()
	l := d.errs
	// A field that failed to decode (an unset ${VAR}, a wrong type) holds
	// its zero value; what validation says about that value, or about the
	// block right around it ("exactly one of secret and public_key_pem"),
	// only repeats the first error.
	broken := map[string]bool{}
	for _, fe := range configerr.Fields(d.errs.Err()) {
		broken[fe.Path] = true
		broken[parentPath(fe.Path)] = true
	}
	for _, fe := range configerr.Fields(cfg.Validate()) {
		if fe.Path != "" && broken[fe.Path] {
			continue
		}
		c := *fe
		c.File = name
		c.Line = d.lineFor(c.Path)
		l.Merge("", &c)
	}
	if err := l.Err(); err != nil {
		return nil, d.redact(err)
	}
	return cfg, nil
}

// flowVarRef finds an unquoted ${ after a [, { or comma on one line.
var flowVarRef = regexp.MustCompile(`(?m)^[^#"'\n]*[\[{,][ \t]*\$\{`)

func yamlError(name string, data []byte, err error) *configerr.FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := &configerr.FieldError{File: name, Line: lineOf(msg), Msg: trimYAMLLine(msg)}
	// In [ ] and { } the braces of an unquoted ${VAR} are YAML syntax; the
	// parser's line is often that of the enclosing block.
	if loc := flowVarRef.FindIndex(data); loc != nil {
		line := 1 + bytes.Count(data[:loc[1]], []byte("\n"))
		fe.Msg += fmt.Sprintf(` (line %d: inside [ ] or { }, quote a ${VAR}: "${VAR}")`, line)
	}
	return fe
}

// extraNodes counts the nodes aliases add to the tree once expanded,
// saturating just above maxAliasNodes; an alias to its own anchor counts
// as too many. Each node's expanded size is computed once.
func extraNodes(root *yaml.Node) int {
	const inProgress = -1
	memo := map[*yaml.Node]int{}
	raw := 0
	var size func(n *yaml.Node, viaAlias bool) int
	size = func(n *yaml.Node, viaAlias bool) int {
		if n == nil {
			return 0
		}
		if n.Kind == yaml.AliasNode {
			return size(n.Alias, true)
		}
		if s, ok := memo[n]; ok && (viaAlias || s == inProgress) {
			if s == inProgress {
				return maxAliasNodes + 1
			}
			return s
		}
		memo[n] = inProgress
		if !viaAlias {
			raw++
		}
		s := 1
		for _, c := range n.Content {
			s += size(c, viaAlias)
			if s > maxAliasNodes*2 {
				s = maxAliasNodes * 2
			}
		}
		memo[n] = s
		return s
	}
	total := size(root, false)
	return total - raw
}

// parentPath is the path of the block holding path: "a.b[0]" for
// "a.b[0].c", "a.b" for "a.b[0]", "" at the top.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// Format renders an error from Load as one line per problem, sorted by line.
func Format(err error) string {
	fields := configerr.Fields(err)
	sort.SliceStable(fields, func(i, j int) bool { return fields[i].Line < fields[j].Line })
	var b strings.Builder
	for _, f := range fields {
		b.WriteString(f.Error())
		b.WriteByte('\n')
	}
	return b.String()
}
