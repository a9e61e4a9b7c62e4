package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/outpost-edge/outpost/internal/buildinfo"
)

func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "print the version and build information",
		flags: func(fs *flag.FlagSet) func([]string) int {
			return func([]string) int {
				fmt.Fprintln(os.Stdout, "outpost", buildinfo.Version(), buildinfo.GoVersion())
				return 0
			}
		},
	}
}
