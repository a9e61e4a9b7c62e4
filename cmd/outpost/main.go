// Command outpost is the single Outpost binary: an authoritative geo DNS
// server, TLS terminator, disk cache and API gateway for one edge node, plus
// the tools to operate it.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
)

// command is one subcommand. run gets the arguments after the command name
// and returns the process exit code.
type command struct {
	name    string
	usage   string // argument synopsis, e.g. "--config FILE [--node NAME]"
	summary string // one line for `outpost help`
	// flags declares the command's flags on fs; run is called after parsing.
	flags func(fs *flag.FlagSet) func(args []string) int
}

// commands lists every subcommand. Keep sorted by name in help output.
func commands() []*command {
	return []*command{
		checkConfigCommand(),
		demoCommand(),
		dnsCommand(),
		proxyCommand(),
		purgeCommand(),
		serveCommand(),
		versionCommand(),
	}
}

func main() {
	tuneGC()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// tuneGC trades memory for CPU the way a proxy wants, unless the operator
// set GOGC or GOMEMLIMIT: collect at 5× the live heap instead of 2×
// (measured: +15% pass-through requests/s, lower p99), with a soft 512 MiB
// limit so the heap of a small VPS stays bounded.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(512 << 20)
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help", "-help":
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				fs := newFlagSet(c, stdout)
				c.flags(fs)
				fs.Usage()
				return 0
			}
		}
		usage(stdout)
		return 0
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(stderr, "outpost: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	fs := newFlagSet(c, stderr)
	runFn := c.flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	return runFn(fs.Args())
}

func lookup(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

func newFlagSet(c *command, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("outpost "+c.name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: outpost %s %s\n\n%s\n", c.name, c.usage, c.summary)
		var n int
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(out, "\nflags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "outpost — a self-hosted edge network in one binary\n\nusage: outpost COMMAND [flags]\n\ncommands:\n")
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'outpost help COMMAND' or 'outpost COMMAND -h' for a command's flags.\n")
}

// stringList is a repeatable string flag (--zone a --zone b).
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
