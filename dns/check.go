package dns

import (
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/internal/cluster"
)

// Check reports every error Reload(cfg, nodes) would return, without
// changing what the server answers. It reads the zone files, parses the
// config records, places the steered names, builds each zone with the
// runtime records it would carry, decodes the TSIG keys and opens (then
// closes) the geo database when its path changed. A node checks every
// subsystem this way before it reloads any of them, so a broken zone file
// leaves the whole node on its old config rather than only that zone.
//
// A config that passes Check reloads cleanly unless a file changes, or a
// runtime record is added, between the two calls.
func (s *Server) Check(cfg Config, nodes []cluster.Node) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.geoOpt == nil && (s.geo == nil || s.geoPath != cfg.Geo.Database) {
		g, err := OpenGeoDB(cfg.Geo.Database)
		if err != nil {
			errs = append(errs, err)
		} else {
			_ = g.Close()
		}
	}
	// A throwaway key set: set only decodes, and the live one stays put.
	if err := (&tsigKeys{}).set(cfg.Transfer.Keys); err != nil {
		errs = append(errs, err)
	}
	sources, steeredBy, loadErrs := s.loadLocked(cfg, nodes, nil)
	errs = append(errs, loadErrs...)
	for origin, src := range sources {
		// The serial bump only moves the SOA serial; it cannot make a
		// zone fail, so the current one stands in for Reload's.
		if _, err := buildZone(origin, s.recordsLocked(src), steeredBy[origin], s.bumps[origin], src.inline); err != nil {
			errs = append(errs, fmt.Errorf("zone %s: %w", origin, err))
		}
	}
	return errors.Join(errs...)
}
