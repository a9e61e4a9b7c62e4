// Package configs embeds the example configuration files, so that
// `outpost demo` runs exactly the configs/demo.yaml a reader sees here.
package configs

import "embed"

// FS holds demo.yaml and the demo zone file.
//
//go:embed demo.yaml demo.test.zone
var FS embed.FS
