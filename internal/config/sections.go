package config

import (
	"github.com/outpost-edge/outpost/internal/configerr"
)

// sections holds the top-level blocks owned by the subsystem packages.
type sections struct{}

// routeSections holds the per-route blocks owned by subsystem packages.
type routeSections struct{}

func (c *Config) sectionDefaults()                 {}
func (c *Config) validateSections(*configerr.List) {}
func (c *Config) poolNames() map[string]bool       { return map[string]bool{} }

func (r *Route) validateSections(string, *configerr.List) {}
