package dns

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/internal/httperr"
)

// Errors of the runtime records API.
var (
	ErrNoZone   = errors.New("dns: no served zone contains the name")
	ErrNotFound = errors.New("dns: no such runtime record")
	ErrBadType  = errors.New("dns: record type cannot be added at runtime")
)

// AddRecord adds rr to the zone that holds its name (longest suffix) and
// bumps the zone's SOA serial; queries see it at once. Runtime records
// survive Reload and are not written to zone files; with
// Options.RecordsFile they are saved there before AddRecord returns
// (ErrNotSaved when that fails, and nothing changed), else they live in
// memory only. Adding a record that is already present is a no-op.
func (s *Server) AddRecord(rr mdns.RR) error {
	if rr == nil {
		return errors.New("dns: nil record")
	}
	switch t := rr.Header().Rrtype; t {
	case mdns.TypeSOA, mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeANY, mdns.TypeAXFR, mdns.TypeIXFR, mdns.TypeNone:
		return fmt.Errorf("%w: %s", ErrBadType, mdns.Type(t))
	}
	// The caller's record is left as it is: the zone keeps its own copy.
	c := canonicalRR(mdns.Copy(rr))
	return s.changeRecords(c.Header().Name, func(list []mdns.RR) ([]mdns.RR, bool, error) {
		for _, o := range list {
			if mdns.IsDuplicate(o, c) {
				return list, false, nil
			}
		}
		return append(list, c), true, nil
	})
}

// RemoveRecord removes a record added with AddRecord (matched by name,
// type and data; the TTL is ignored) and bumps the SOA serial. Records from
// zone files and config cannot be removed at runtime.
func (s *Server) RemoveRecord(rr mdns.RR) error {
	_, err := s.removeRecord(rr)
	return err
}

// removeRecord is RemoveRecord returning the record removed, whose TTL
// may differ from rr's.
func (s *Server) removeRecord(rr mdns.RR) (mdns.RR, error) {
	if rr == nil {
		return nil, errors.New("dns: nil record")
	}
	c := mdns.Copy(rr)
	c.Header().Name = canonical(rr.Header().Name)
	if c.Header().Class == 0 {
		c.Header().Class = mdns.ClassINET
	}
	var removed mdns.RR
	err := s.changeRecords(c.Header().Name, func(list []mdns.RR) ([]mdns.RR, bool, error) {
		for i, o := range list {
			if mdns.IsDuplicate(o, c) {
				removed = o
				return append(list[:i:i], list[i+1:]...), true, nil
			}
		}
		return list, false, ErrNotFound
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoZone) {
		if o, serr := s.removeUnserved(c); o != nil || serr != nil {
			return o, serr
		}
	}
	if err != nil {
		return nil, err
	}
	return mdns.Copy(removed), nil
}

// removeUnserved removes rr from the saved records that are not served:
// those kept because their zone rejected them, and those waiting for a
// zone that is not served now. Nothing served changes, so no serial moves;
// only the file is written (and nothing changes if that fails). It returns
// the record removed, nil when there was none.
func (s *Server) removeUnserved(rr mdns.RR) (mdns.RR, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	served := s.snap.Load().zones
	for origin, texts := range s.kept {
		for i, text := range texts {
			if o, err := mdns.NewRR(text); err == nil && o != nil && mdns.IsDuplicate(canonicalRR(o), rr) {
				s.kept[origin] = append(texts[:i:i], texts[i+1:]...)
				if err := s.saveLocked(); err != nil {
					s.kept[origin] = texts
					return nil, err
				}
				return o, nil
			}
		}
	}
	for origin, list := range s.overlay {
		if served[origin] != nil {
			continue
		}
		for i, o := range list {
			if mdns.IsDuplicate(o, rr) {
				s.overlay[origin] = append(list[:i:i], list[i+1:]...)
				if err := s.saveLocked(); err != nil {
					s.overlay[origin] = list
					return nil, err
				}
				return mdns.Copy(o), nil
			}
		}
	}
	return nil, nil
}

// Unserved lists the saved runtime records that are not served, with why:
// their zone is not served now, or the zone rejects them, or they do not
// parse. They stay in the records file until removed.
func (s *Server) Unserved() []UnservedJSON {
	s.mu.Lock()
	defer s.mu.Unlock()
	served := s.snap.Load().zones
	out := []UnservedJSON{}
	for origin, list := range s.overlay {
		if served[origin] == nil {
			for _, rr := range list {
				out = append(out, UnservedJSON{Zone: origin, RR: rr.String(), Reason: "zone not served"})
			}
		}
	}
	for origin, texts := range s.kept {
		for _, text := range texts {
			reason := "rejected by the zone"
			if o, err := mdns.NewRR(text); err != nil || o == nil {
				reason = "does not parse"
			}
			out = append(out, UnservedJSON{Zone: origin, RR: text, Reason: reason})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Zone != out[j].Zone {
			return out[i].Zone < out[j].Zone
		}
		return out[i].RR < out[j].RR
	})
	return out
}

// UnservedJSON is a saved runtime record that is not served.
type UnservedJSON struct {
	Zone   string `json:"zone"`
	RR     string `json:"rr"`
	Reason string `json:"reason"`
}

func canonicalRR(rr mdns.RR) mdns.RR {
	rr.Header().Name = canonical(rr.Header().Name)
	if rr.Header().Class == 0 {
		rr.Header().Class = mdns.ClassINET
	}
	return rr
}

// changeRecords applies edit to the runtime records of name's zone and, if
// they changed, rebuilds and swaps the zone with the serial bumped.
func (s *Server) changeRecords(name string, edit func([]mdns.RR) ([]mdns.RR, bool, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	z := old.findZone(name)
	if z == nil {
		return fmt.Errorf("%w: %s", ErrNoZone, name)
	}
	src := s.sources[z.origin]
	if src == nil {
		return fmt.Errorf("%w: %s", ErrNoZone, name)
	}
	list, changed, err := edit(s.overlay[z.origin])
	if err != nil || !changed {
		return err
	}
	prevList, prevBump := s.overlay[z.origin], s.bumps[z.origin]
	s.overlay[z.origin] = list
	s.bumps[z.origin]++
	nz, err := s.buildLocked(src, steeredOf(z), z)
	if err == nil {
		// Saved before it is served or reported: a change the caller was
		// told about survives a crash, and a change that could not be
		// saved is not served either.
		err = s.saveLocked()
	}
	if err != nil {
		s.overlay[z.origin], s.bumps[z.origin] = prevList, prevBump
		if errors.Is(err, ErrNotSaved) {
			return err
		}
		return fmt.Errorf("dns: %w", err)
	}
	s.snap.Store(old.withZones(nz))
	s.notifyLocked(z.origin)
	return nil
}

// Records returns copies of every record served in zone (SOA first, with
// the current serial), or nil when the zone is not served.
func (s *Server) Records(zone string) []mdns.RR {
	z := s.snap.Load().zones[canonical(zone)]
	if z == nil {
		return nil
	}
	out := make([]mdns.RR, len(z.records))
	for i, rr := range z.records {
		out[i] = mdns.Copy(rr)
	}
	return out
}

// Zones lists the served zone origins.
func (s *Server) Zones() []string {
	sn := s.snap.Load()
	out := make([]string, 0, len(sn.zones))
	for o := range sn.zones {
		out = append(out, o)
	}
	sortNames(out)
	return out
}

// Serial returns the served SOA serial of zone, false when not served.
func (s *Server) Serial(zone string) (uint32, bool) {
	z := s.snap.Load().zones[canonical(zone)]
	if z == nil {
		return 0, false
	}
	return z.soa.Serial, true
}

func sortNames(names []string) {
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && canonicalLess(names[j], names[j-1]); j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
}

// RecordJSON is one record in the admin API.
type RecordJSON struct {
	Name string `json:"name"`           // fully qualified, e.g. "_acme-challenge.example.com."
	Type string `json:"type"`           // e.g. "TXT"
	TTL  uint32 `json:"ttl,omitempty"`  // seconds; default 60 when adding
	Data string `json:"data"`           // RDATA in zone-file syntax, e.g. "\"token\"" or "10 mail.example.com."
	RR   string `json:"rr,omitempty"`   // the whole record; an alternative to name/type/ttl/data on input
	Zone string `json:"zone,omitempty"` // set on output
}

// ZoneRecordsJSON is the GET /v1/dns/records response for one zone.
type ZoneRecordsJSON struct {
	Zone    string       `json:"zone"`
	Serial  uint32       `json:"serial"`
	Records []RecordJSON `json:"records"`
}

// AdminHandler serves the runtime records API, mounted by the admin server
// behind its authentication:
//
//	GET    /v1/dns/records[?zone=example.com]  list records (all zones without ?zone)
//	POST   /v1/dns/records                     add a record: {"name","type","ttl","data"} or {"rr"}
//	DELETE /v1/dns/records                     remove a runtime record: same body, or ?name=&type=&data=
func (s *Server) AdminHandler() http.Handler {
	return http.HandlerFunc(s.serveAdmin)
}

func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/dns/records" {
		httperr.Write(w, r, http.StatusNotFound, "not_found", "no such DNS admin endpoint")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.adminList(w, r)
	case http.MethodPost, http.MethodDelete:
		rr, err := recordFromRequest(w, r)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httperr.WriteBodyError(w, r, "", err)
			return
		}
		if err != nil {
			httperr.Write(w, r, http.StatusBadRequest, "bad_record", err.Error())
			return
		}
		if r.Method == http.MethodPost {
			err = s.AddRecord(rr)
		} else if removed, rerr := s.removeRecord(rr); rerr != nil {
			err = rerr
		} else {
			rr = removed // the stored TTL, not the request's default
		}
		switch {
		case errors.Is(err, ErrNoZone):
			httperr.Write(w, r, http.StatusUnprocessableEntity, "no_zone", "no served zone contains "+rr.Header().Name)
			return
		case errors.Is(err, ErrNotFound):
			httperr.Write(w, r, http.StatusNotFound, "not_found", "no such runtime record")
			return
		case errors.Is(err, ErrBadType):
			httperr.Write(w, r, http.StatusBadRequest, "bad_record", err.Error())
			return
		case errors.Is(err, ErrNotSaved):
			s.log.Error("runtime record change not saved, not applied", "error", err)
			httperr.Write(w, r, http.StatusServiceUnavailable, "not_saved", "the change could not be saved; nothing was changed")
			return
		case err != nil:
			s.log.Error("runtime record change failed", "error", err)
			httperr.Write(w, r, http.StatusConflict, "rejected", "the record conflicts with the zone")
			return
		}
		z := s.snap.Load().findZone(canonical(rr.Header().Name))
		out := recordJSON(rr)
		status := http.StatusOK
		if r.Method == http.MethodPost {
			status = http.StatusCreated
		}
		if z == nil { // an unserved record was removed from the file
			writeJSON(w, status, map[string]any{"record": out})
			return
		}
		writeJSON(w, status, map[string]any{"record": out, "zone": z.origin, "serial": z.soa.Serial})
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		httperr.Write(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "use GET, POST or DELETE")
	}
}

func (s *Server) adminList(w http.ResponseWriter, r *http.Request) {
	zones := s.Zones()
	if q := r.URL.Query().Get("zone"); q != "" {
		if _, ok := s.Serial(q); !ok {
			httperr.Write(w, r, http.StatusNotFound, "no_zone", "zone not served: "+q)
			return
		}
		zones = []string{canonical(q)}
	}
	out := []ZoneRecordsJSON{}
	for _, zn := range zones {
		serial, _ := s.Serial(zn)
		zr := ZoneRecordsJSON{Zone: zn, Serial: serial, Records: []RecordJSON{}}
		for _, rr := range s.Records(zn) {
			zr.Records = append(zr.Records, recordJSON(rr))
		}
		out = append(out, zr)
	}
	resp := map[string]any{"zones": out}
	if u := s.Unserved(); len(u) > 0 {
		resp["unserved"] = u
	}
	writeJSON(w, http.StatusOK, resp)
}

func recordJSON(rr mdns.RR) RecordJSON {
	h := rr.Header()
	full := rr.String()
	hdr := h.String()
	return RecordJSON{
		Name: h.Name, Type: mdns.Type(h.Rrtype).String(), TTL: h.Ttl,
		Data: strings.TrimPrefix(full, hdr), RR: full,
	}
}

// defaultRuntimeTTL is the TTL of records added without one: short, as
// ACME challenge records are.
const defaultRuntimeTTL = 60

// recordFromRequest reads a record from a JSON body or, for DELETE, from
// query parameters.
func recordFromRequest(w http.ResponseWriter, r *http.Request) (mdns.RR, error) {
	var in RecordJSON
	if q := r.URL.Query(); r.Method == http.MethodDelete && q.Get("name") != "" {
		in.Name, in.Type, in.Data = q.Get("name"), q.Get("type"), q.Get("data")
		if t := q.Get("ttl"); t != "" {
			n, err := strconv.ParseUint(t, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("bad ttl %q", t)
			}
			in.TTL = uint32(n)
		}
	} else {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return nil, fmt.Errorf("want a JSON record {\"name\",\"type\",\"ttl\",\"data\"}: %w", err)
		}
	}
	text := in.RR
	if text == "" {
		if in.Name == "" || in.Type == "" {
			return nil, errors.New("name and type are required (or rr)")
		}
		if _, ok := mdns.StringToType[strings.ToUpper(in.Type)]; !ok {
			return nil, fmt.Errorf("unknown record type %q", in.Type)
		}
		ttl := in.TTL
		if ttl == 0 {
			ttl = defaultRuntimeTTL
		}
		text = fmt.Sprintf("%s %d IN %s %s", mdns.Fqdn(in.Name), ttl, strings.ToUpper(in.Type), in.Data)
	}
	if strings.ContainsAny(text, "\n\r") || strings.Contains(text, "$") && strings.HasPrefix(strings.TrimSpace(text), "$") {
		return nil, errors.New("one record per request, no directives")
	}
	rr, err := mdns.NewRR(text)
	if err != nil {
		return nil, errors.New(cleanParseError(err.Error()))
	}
	if rr == nil {
		return nil, errors.New("empty record")
	}
	return rr, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
