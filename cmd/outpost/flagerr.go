package main

import (
	"regexp"
	"strings"

	"github.com/outpost-edge/outpost/internal/configerr"
)

// flagPath maps a config path of a quick mode's generated config, without
// list indexes ("steered.answers"), to the flag that set it.
type flagPath struct{ path, flag string }

var listIndex = regexp.MustCompile(`\[\d+\]`)

// flagErrors renders the validation errors of a config built from flags as
// one line per problem naming the flag the user typed ("outpost proxy:
// --origin: want an http:// or https:// URL, got "ftp://x""): the config,
// its paths and line numbers are invisible in quick mode. Problems the
// flags map to once (rrl.responses_per_second and rrl.burst both from
// --rrl) are printed once.
func flagErrors(prog string, err error, flags []flagPath) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, fe := range configerr.Fields(err) {
		name := fe.Path
		bare := listIndex.ReplaceAllString(name, "")
		for _, f := range flags {
			if bare == f.path || strings.HasPrefix(bare, f.path+".") {
				name = f.flag
				break
			}
		}
		line := prog + ": "
		if name != "" {
			line += name + ": "
		}
		line += fe.Msg + "\n"
		if !seen[line] {
			seen[line] = true
			b.WriteString(line)
		}
	}
	return b.String()
}
