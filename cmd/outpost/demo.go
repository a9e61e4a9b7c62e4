package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/internal/demo"
	"github.com/outpost-edge/outpost/internal/telemetry"
)

func demoCommand() *command {
	return &command{
		name:    "demo",
		usage:   "[--data DIR] [--token TOKEN] [--log-level LEVEL]",
		summary: "run the whole edge network on loopback: DNS, three edges, origins, admin API",
		flags: func(fs *flag.FlagSet) func([]string) int {
			data := fs.String("data", "", "data `DIR` (default $TMPDIR/outpost-demo)")
			token := fs.String("token", os.Getenv("OUTPOST_DEMO_TOKEN"), "admin API `TOKEN` (default: $OUTPOST_DEMO_TOKEN, else generated)")
			level := fs.String("log-level", "warn", "log `LEVEL`: debug, info, warn, error")
			return func([]string) int {
				log := telemetry.NewLogger(os.Stderr, *level, "text")
				d, err := demo.Start(demo.Options{DataDir: *data, Token: *token, Log: log})
				if err != nil {
					fmt.Fprintf(os.Stderr, "outpost demo: %v\n", err)
					return 1
				}
				d.PrintGuide(os.Stdout)
				sigs := make(chan os.Signal, 1)
				signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
				<-sigs
				fmt.Fprintln(os.Stdout, "\nstopping…")
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := d.Shutdown(ctx); err != nil {
					fmt.Fprintf(os.Stderr, "outpost demo: shutdown: %v\n", err)
				}
				return 0
			}
		},
	}
}
