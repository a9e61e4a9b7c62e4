package dns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	mdns "github.com/miekg/dns"
)

// defaultRecordTTL applies to config records without a TTL.
const defaultRecordTTL = 3600

// parseRR parses one record in zone-file syntax relative to origin.
func parseRR(s, origin string) (mdns.RR, error) {
	zp := mdns.NewZoneParser(strings.NewReader(s), origin, "")
	zp.SetDefaultTTL(defaultRecordTTL)
	rr, ok := zp.Next()
	if err := zp.Err(); err != nil {
		return nil, errors.New(cleanParseError(err.Error()))
	}
	if !ok || rr == nil {
		return nil, fmt.Errorf("no record in %q", s)
	}
	if _, more := zp.Next(); more {
		return nil, fmt.Errorf("want one record, got several in %q", s)
	}
	return rr, nil
}

// parseErrRE splits miekg/dns's "file: dns: msg: "tok" at line: L:C".
var parseErrRE = regexp.MustCompile(`^(?:(.*?): )?dns: (.*) at line: (\d+):(\d+)$`)

// cleanParseError drops the "dns: " noise from a record parse error.
func cleanParseError(s string) string {
	if m := parseErrRE.FindStringSubmatch(s); m != nil {
		return m[2]
	}
	return s
}

// ZoneFileError is a zone file problem at a line.
type ZoneFileError struct {
	File string
	Line int // 0 when unknown
	Msg  string
}

func (e *ZoneFileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// maxZoneFileSize bounds what one zone file (with includes) may hold, so a
// mistaken path to a huge file cannot exhaust memory.
const maxZoneFileSize = 256 << 20

// readZoneFile parses an RFC 1035 zone file. origin may be "" to take it
// from the file's SOA. $INCLUDE is confined to the file's directory.
func readZoneFile(path, origin string) (string, []mdns.RR, error) {
	if origin == "" {
		o, err := soaOrigin(path)
		if err != nil {
			return "", nil, err
		}
		origin = o
	}
	rrs, err := parseZoneFile(path, origin)
	return origin, rrs, err
}

func parseZoneFile(path, origin string) ([]mdns.RR, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ZoneFileError{File: path, Msg: err.Error()}
	}
	defer f.Close()
	dir := filepath.Dir(path)
	// The parser is given the base name and a file system rooted at the
	// file's directory, so $INCLUDE resolves inside that directory only:
	// os.Root rejects "..", absolute paths are re-rooted there, and a
	// symbolic link that leads out of the directory is refused too.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, &ZoneFileError{File: path, Msg: err.Error()}
	}
	defer root.Close()
	zp := mdns.NewZoneParser(io.LimitReader(f, maxZoneFileSize), origin, filepath.Base(path))
	zp.SetIncludeAllowed(true)
	zp.SetIncludeFS(root.FS())
	var rrs []mdns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, zoneFileError(dir, path, err)
	}
	return rrs, nil
}

// zoneFileError turns a miekg/dns parse error into file:line form, naming
// the included file when the problem is in one.
func zoneFileError(dir, path string, err error) error {
	m := parseErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return &ZoneFileError{File: path, Msg: err.Error()}
	}
	file := path
	if m[1] != "" && m[1] != filepath.Base(path) {
		file = filepath.Join(dir, filepath.FromSlash(m[1]))
	}
	var line int
	fmt.Sscanf(m[3], "%d", &line)
	return &ZoneFileError{File: file, Line: line, Msg: m[2]}
}

// soaOrigin finds the owner of the file's SOA record.
func soaOrigin(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", &ZoneFileError{File: path, Msg: err.Error()}
	}
	defer f.Close()
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return "", &ZoneFileError{File: path, Msg: err.Error()}
	}
	defer root.Close()
	zp := mdns.NewZoneParser(io.LimitReader(f, maxZoneFileSize), ".", filepath.Base(path))
	zp.SetIncludeAllowed(true)
	zp.SetIncludeFS(root.FS())
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if rr.Header().Rrtype == mdns.TypeSOA {
			if rr.Header().Name == "." {
				break
			}
			return canonical(rr.Header().Name), nil
		}
	}
	if err := zp.Err(); err != nil {
		return "", zoneFileError(filepath.Dir(path), path, err)
	}
	return "", &ZoneFileError{File: path, Msg: "cannot tell the zone origin: add $ORIGIN or an absolute SOA owner, or name the origin in the config (zones[].origin, --zone origin=FILE)"}
}
