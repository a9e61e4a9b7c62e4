package dns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// ErrNotSaved wraps a failure to persist a runtime record change; the
// change was not applied.
var ErrNotSaved = errors.New("dns: runtime records could not be saved")

// recordStore keeps runtime records and serial bumps in one JSON file,
// replaced whole on every change (temp file, fsync, rename, fsync of the
// directory) rather than in a bbolt database: the overlay is a handful of
// records (ACME challenges, a few operator entries), so rewriting it is
// as cheap as a bbolt commit; one rename makes records and bumps change
// together; there is no open handle or file lock to tie to the Server's
// lifetime (New has no Close, and a node may be rebuilt in-process); and
// an operator can read it, and a damaged entry costs that entry, not the
// whole database. One process owns a data directory, as for every other
// file there.
type recordStore struct {
	path string
}

// storeVersion is the format of the records file; a file with another
// version is refused rather than overwritten.
const storeVersion = 1

// storeFile is the records file.
type storeFile struct {
	Version int                    `json:"version"`
	Zones   map[string]*storedZone `json:"zones"` // by origin, fully qualified
}

// storedZone is what survives a restart for one zone.
type storedZone struct {
	// Bump is added to the zone's own SOA serial (see buildLocked), so the
	// serial after a restart is the one last served, never less.
	Bump uint32 `json:"bump,omitempty"`
	// Records are runtime records in presentation format, one per entry.
	Records []string `json:"records,omitempty"`
}

// openRecordStore creates the directory of path and reads what it holds.
// A missing file is an empty store. A file that is not valid JSON is moved
// aside (path.corrupt-<unix time>) and logged, and the store starts empty:
// the copy keeps it for the operator, and the next change does not
// overwrite it. A file that cannot be read, or of an unknown version, is
// an error: starting without it would overwrite it with less.
func openRecordStore(path string, log *slog.Logger, now func() time.Time) (*recordStore, *storeFile, error) {
	st := &recordStore{path: path}
	empty := &storeFile{Version: storeVersion, Zones: map[string]*storedZone{}}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("records file %s: %w", path, err)
	}
	// A crash between writing a new version and renaming it leaves the
	// temp file; the file itself is whole (old or new version).
	if n, _ := atomicfile.RemoveTemps(path); n > 0 {
		log.Info("removed temp files a crash left beside the records file", "path", path, "count", n)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, empty, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("records file: %w", err)
	}
	var f storeFile
	if err := json.Unmarshal(b, &f); err != nil {
		aside := path + ".corrupt-" + strconv.FormatInt(now().Unix(), 10)
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, nil, fmt.Errorf("records file %s: %v; moving it aside: %w", path, err, rerr)
		}
		log.Error("runtime records file is damaged: moved aside, starting without runtime records",
			"path", path, "saved_as", aside, "error", err)
		return st, empty, nil
	}
	if f.Version != storeVersion {
		return nil, nil, fmt.Errorf("records file %s: version: want %d, got %d", path, storeVersion, f.Version)
	}
	zones := make(map[string]*storedZone, len(f.Zones))
	for origin, z := range f.Zones {
		if z == nil {
			continue
		}
		c := canonical(origin)
		if prev := zones[c]; prev != nil { // the same zone spelled twice by hand
			prev.Bump = max(prev.Bump, z.Bump)
			prev.Records = append(prev.Records, z.Records...)
			continue
		}
		zones[c] = z
	}
	f.Zones = zones
	return st, &f, nil
}

// save replaces the file with f.
func (st *recordStore) save(f *storeFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(st.path, append(b, '\n'), 0o600)
}

// saveLocked writes the runtime records, the records kept but not served
// and the serial bumps of every zone, served or not. Without a store it
// does nothing: runtime records then live in memory only.
func (s *Server) saveLocked() error {
	if s.store == nil {
		return nil
	}
	f := &storeFile{Version: storeVersion, Zones: map[string]*storedZone{}}
	zone := func(origin string) *storedZone {
		z := f.Zones[origin]
		if z == nil {
			z = &storedZone{}
			f.Zones[origin] = z
		}
		return z
	}
	for origin, rrs := range s.overlay {
		for _, rr := range rrs {
			z := zone(origin)
			z.Records = append(z.Records, rr.String())
		}
	}
	for origin, texts := range s.kept {
		if len(texts) > 0 {
			z := zone(origin)
			z.Records = append(z.Records, texts...)
		}
	}
	for origin, b := range s.bumps {
		if b != 0 {
			zone(origin).Bump = b
		}
	}
	if err := s.store.save(f); err != nil {
		return fmt.Errorf("%w: %w", ErrNotSaved, err)
	}
	return nil
}

// restoreLocked puts the records of f back: into the served zones, built
// again with them, and into the overlay of zones not served now, where
// they wait for the zone to come back. A record that does not parse, or
// that its zone rejects (say, a CNAME was added to the zone file at its
// name), is logged and not served but stays in the file. The bumps were
// set before the zones were first built, so serials are the ones last
// served.
func (s *Server) restoreLocked(f *storeFile) {
	origins := make([]string, 0, len(f.Zones))
	for o := range f.Zones {
		origins = append(origins, o)
	}
	sort.Strings(origins)
	old := s.snap.Load()
	var rebuilt []*Zone
	for _, origin := range origins {
		var rrs []mdns.RR
	next:
		for _, text := range f.Zones[origin].Records {
			rr, err := mdns.NewRR(text)
			if err == nil && rr == nil {
				err = errors.New("no record")
			}
			if err != nil {
				s.log.Error("saved runtime record does not parse: not served, kept in the records file",
					"zone", origin, "record", text, "error", cleanParseError(err.Error()))
				s.kept[origin] = append(s.kept[origin], text)
				continue
			}
			rr.Header().Name = canonical(rr.Header().Name)
			for _, o := range rrs {
				if mdns.IsDuplicate(o, rr) {
					continue next
				}
			}
			rrs = append(rrs, rr)
		}
		if len(rrs) == 0 {
			continue // a bump alone was applied before the first build
		}
		s.overlay[origin] = rrs
		z, src := old.zones[origin], s.sources[origin]
		if z == nil || src == nil {
			s.log.Info("runtime records saved for a zone that is not served: kept, served when the zone is back",
				"zone", origin, "records", len(rrs))
			continue
		}
		steered := steeredOf(z)
		nz, err := s.buildLocked(src, steered, nil)
		if err != nil {
			// Find the records the zone rejects by adding them one by one.
			var ok []mdns.RR
			for _, rr := range rrs {
				s.overlay[origin] = append(ok[:len(ok):len(ok)], rr)
				if _, err := s.buildLocked(src, steered, nil); err != nil {
					s.log.Error("saved runtime record conflicts with the zone: not served, kept in the records file",
						"zone", origin, "record", rr.String(), "error", err)
					s.kept[origin] = append(s.kept[origin], rr.String())
					continue
				}
				ok = append(ok, rr)
			}
			s.overlay[origin] = ok
			if nz, err = s.buildLocked(src, steered, nil); err != nil {
				// Unreachable in practice (ok just built); serve the zone
				// as configured and keep every record in the file.
				s.log.Error("saved runtime records not served", "zone", origin, "error", err)
				for _, rr := range ok {
					s.kept[origin] = append(s.kept[origin], rr.String())
				}
				s.overlay[origin] = nil
				continue
			}
		}
		rebuilt = append(rebuilt, nz)
	}
	s.snap.Store(old.withZones(rebuilt...))
}

// steeredOf lists the steered names of z, to build it again.
func steeredOf(z *Zone) []*steeredName {
	var steered []*steeredName
	for _, n := range z.nodes {
		if n.steer != nil {
			steered = append(steered, n.steer)
		}
	}
	return steered
}
