package dns

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/outpost-edge/outpost/internal/logtest"
)

// persistOptions saves runtime records to path and logs into the returned
// buffer.
func persistOptions(path string) (Options, *logtest.Buffer) {
	lb := &logtest.Buffer{}
	return Options{RecordsFile: path, Logger: slog.New(slog.NewTextHandler(lb, nil))}, lb
}

// answerCase is one query and the records that must answer it; nil want
// means the name has no such records (NXDOMAIN or NODATA).
type answerCase struct {
	name  string
	qtype uint16
	want  []string
}

// checkAnswers queries addr over UDP for each case.
func checkAnswers(t *testing.T, step, addr string, cases []answerCase) {
	t.Helper()
	for _, tc := range cases {
		r := exchange(t, addr, "udp", newQuery(tc.name, tc.qtype))
		got := rrStrings(r.Answer)
		if tc.want == nil {
			if len(got) != 0 {
				t.Errorf("%s: %s %s answered %q, want nothing", step, tc.name, mdns.TypeToString[tc.qtype], got)
			}
			continue
		}
		if !slices.Equal(got, want(t, tc.want)) {
			t.Errorf("%s: %s %s answered %q, want %q (rcode %s)", step, tc.name, mdns.TypeToString[tc.qtype],
				got, tc.want, mdns.RcodeToString[r.Rcode])
		}
	}
}

// soaSerial asks addr for zone's SOA over UDP.
func soaSerial(t *testing.T, addr, zone string) uint32 {
	t.Helper()
	r := exchange(t, addr, "udp", newQuery(zone, mdns.TypeSOA))
	if len(r.Answer) != 1 {
		t.Fatalf("SOA %s: %v", zone, r)
	}
	return r.Answer[0].(*mdns.SOA).Serial
}

// adminDo sends one request to the server's admin handler.
func adminDo(s *Server, method, target, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.AdminHandler().ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader(body)))
	return rec
}

// TestRecordsSurviveRestart adds records through the Go API and the admin
// API, then starts a second server on the same file, as after kill -9:
// nothing is written at shutdown, so what answers was saved by the calls.
func TestRecordsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns-records.json")
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	opts, _ := persistOptions(path)
	s1, addr1 := startServer(t, cfg, nil, opts)
	serial0 := soaSerial(t, addr1, "example.com.")
	for _, rr := range []string{
		"api.example.com. 300 IN A 192.0.2.9",
		`_acme-challenge.example.com. 60 IN TXT "token-1"`,
		"example.com. 300 IN MX 20 backup.example.net.",
	} {
		if err := s1.AddRecord(mustRR(t, rr)); err != nil {
			t.Fatalf("AddRecord %s: %v", rr, err)
		}
	}
	if rec := adminDo(s1, "POST", "/v1/dns/records",
		`{"name":"_acme-challenge.www.example.com","type":"TXT","data":"\"token-2\""}`); rec.Code != http.StatusCreated {
		t.Fatalf("admin POST: %d %s", rec.Code, rec.Body)
	}
	serial1 := soaSerial(t, addr1, "example.com.")
	if serial1 != serial0+4 {
		t.Fatalf("serial after 4 adds = %d, want %d", serial1, serial0+4)
	}

	opts, _ = persistOptions(path)
	s2, addr2 := startServer(t, cfg, nil, opts)
	checkAnswers(t, "after restart", addr2, []answerCase{
		{"api.example.com.", mdns.TypeA, []string{"api.example.com. 300 IN A 192.0.2.9"}},
		{"_acme-challenge.example.com.", mdns.TypeTXT, []string{`_acme-challenge.example.com. 60 IN TXT "token-1"`}},
		{"_acme-challenge.www.example.com.", mdns.TypeTXT, []string{`_acme-challenge.www.example.com. 60 IN TXT "token-2"`}},
		{"example.com.", mdns.TypeMX, []string{
			"example.com. 300 IN MX 10 mail.example.com.", // an RRset has one TTL, the lowest
			"example.com. 300 IN MX 20 backup.example.net.",
		}},
	})
	if got := soaSerial(t, addr2, "example.com."); got != serial1 {
		t.Fatalf("serial after restart = %d, want %d as before", got, serial1)
	}

	if err := s2.RemoveRecord(mustRR(t, `_acme-challenge.example.com. 60 IN TXT "token-1"`)); err != nil {
		t.Fatal(err)
	}
	if rec := adminDo(s2, "DELETE", "/v1/dns/records?name=api.example.com&type=A&data=192.0.2.9", ""); rec.Code != http.StatusOK {
		t.Fatalf("admin DELETE: %d %s", rec.Code, rec.Body)
	}
	serial2 := soaSerial(t, addr2, "example.com.")

	opts, _ = persistOptions(path)
	_, addr3 := startServer(t, cfg, nil, opts)
	checkAnswers(t, "after remove and restart", addr3, []answerCase{
		{"api.example.com.", mdns.TypeA, nil},
		{"_acme-challenge.example.com.", mdns.TypeTXT, nil},
		{"_acme-challenge.www.example.com.", mdns.TypeTXT, []string{`_acme-challenge.www.example.com. 60 IN TXT "token-2"`}},
	})
	if got := soaSerial(t, addr3, "example.com."); got != serial2 || !serialAfter(serial2, serial1) {
		t.Fatalf("serial after removes and restart = %d, want %d (after %d)", got, serial2, serial1)
	}
}

// TestReloadBumpSurvivesRestart: a zone whose content changes on reload
// without a new SOA serial gets a bump; a restart must serve that serial,
// not the zone's own.
func TestReloadBumpSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns-records.json")
	inline := func(addr string) Config {
		return testConfig(ZoneConfig{Origin: "example.net", Records: []string{"www 300 IN A " + addr}})
	}
	opts, _ := persistOptions(path)
	s1, addr1 := startServer(t, inline("192.0.2.1"), nil, opts)
	before := soaSerial(t, addr1, "example.net.")
	if err := s1.Reload(inline("192.0.2.2"), nil); err != nil {
		t.Fatal(err)
	}
	bumped := soaSerial(t, addr1, "example.net.")
	if !serialAfter(bumped, before) {
		t.Fatalf("reload with new content served serial %d, not after %d", bumped, before)
	}
	opts, _ = persistOptions(path)
	_, addr2 := startServer(t, inline("192.0.2.2"), nil, opts)
	if got := soaSerial(t, addr2, "example.net."); got != bumped {
		t.Fatalf("serial after restart = %d, want %d", got, bumped)
	}
}

// TestRecordsFileDamaged: a damaged file or entry never stops the server;
// what can be served is, the rest is logged and kept.
func TestRecordsFileDamaged(t *testing.T) {
	good := `_acme-challenge.example.com. 60 IN TXT "good"`
	tests := []struct {
		name       string
		file       string
		serve      []answerCase
		logs       []string // substrings of the log
		keptInFile []string // entries still in the file after the next save
		movedAside bool
	}{
		{
			name:       "not JSON",
			file:       "\x00\x01garbage{",
			logs:       []string{"runtime records file is damaged"},
			movedAside: true,
		},
		{
			name: "bad entries",
			file: `{"version":1,"zones":{"example.com.":{"bump":2,"records":[
				"_acme-challenge.example.com.\t60\tIN\tTXT\t\"good\"",
				"bad.example.com. 60 IN A not-an-ip",
				"alias.example.com. 60 IN A 192.0.2.1"]}}}`,
			serve: []answerCase{
				{"_acme-challenge.example.com.", mdns.TypeTXT, []string{good}},
				{"bad.example.com.", mdns.TypeA, nil},
				{"alias.example.com.", mdns.TypeCNAME, []string{"alias.example.com. 3600 IN CNAME www.example.com."}},
			},
			logs: []string{
				"saved runtime record does not parse",
				"saved runtime record conflicts with the zone",
			},
			keptInFile: []string{"bad.example.com. 60 IN A not-an-ip", "alias.example.com.\t60\tIN\tA\t192.0.2.1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "dns-records.json")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
			opts, logs := persistOptions(path)
			s, addr := startServer(t, cfg, nil, opts)
			checkAnswers(t, "start", addr, tc.serve)
			for _, l := range tc.logs {
				if !strings.Contains(logs.String(), l) {
					t.Errorf("log lacks %q:\n%s", l, logs)
				}
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if got := len(aside) == 1; got != tc.movedAside {
				t.Errorf("moved aside: %v (%q), want %v", got, aside, tc.movedAside)
			}
			// A change saves the file again: the kept entries stay.
			added := "new.example.com. 60 IN A 192.0.2.7"
			if err := s.AddRecord(mustRR(t, added)); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range append(tc.keptInFile, "new.example.com.") {
				if !strings.Contains(string(b), strings.ReplaceAll(k, "\t", `\t`)) {
					t.Errorf("file lost %q:\n%s", k, b)
				}
			}
			checkAnswers(t, "after add", addr, []answerCase{{"new.example.com.", mdns.TypeA, []string{added}}})
		})
	}
}

// TestRecordsNotSaved: when the file cannot be written the change fails,
// through the Go API and the admin API, and nothing is served.
func TestRecordsNotSaved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "dns-records.json")
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	opts, _ := persistOptions(path)
	s, addr := startServer(t, cfg, nil, opts)
	serial := soaSerial(t, addr, "example.com.")
	// The directory becomes a regular file: no temp file can be created.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	rr := `_acme-challenge.example.com. 60 IN TXT "lost"`
	if err := s.AddRecord(mustRR(t, rr)); !errors.Is(err, ErrNotSaved) {
		t.Fatalf("AddRecord with an unwritable file: %v, want ErrNotSaved", err)
	}
	rec := adminDo(s, "POST", "/v1/dns/records", `{"rr":"api.example.com. 60 IN A 192.0.2.9"}`)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not_saved") {
		t.Fatalf("admin POST with an unwritable file: %d %s, want 503 not_saved", rec.Code, rec.Body)
	}
	checkAnswers(t, "after failed adds", addr, []answerCase{
		{"_acme-challenge.example.com.", mdns.TypeTXT, nil},
		{"api.example.com.", mdns.TypeA, nil},
	})
	if got := soaSerial(t, addr, "example.com."); got != serial {
		t.Fatalf("serial moved to %d on a failed add, want %d", got, serial)
	}
	// Once the directory is back, the same add works.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRecord(mustRR(t, rr)); err != nil {
		t.Fatal(err)
	}
	checkAnswers(t, "after the directory is back", addr, []answerCase{
		{"_acme-challenge.example.com.", mdns.TypeTXT, []string{rr}},
	})

	// A file that cannot be read is not started over (it would be
	// overwritten with less): New fails and names it.
	_, err := New(cfg, nil, Options{RecordsFile: filepath.Join(path, "nested.json")})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("New with the records file under a regular file: %v, want an error naming %s", err, path)
	}
}

// TestRecordsOfRemovedZone: records of a zone dropped from the config are
// not served but stay saved, and answer again when the zone is back, by
// reload or by restart.
func TestRecordsOfRemovedZone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns-records.json")
	com := ZoneConfig{File: testdata("example.com.zone")}
	net := ZoneConfig{Origin: "example.net", Records: []string{"www 300 IN A 192.0.2.1"}}
	both, comOnly := testConfig(com, net), testConfig(com)
	netRR := `_acme-challenge.example.net. 60 IN TXT "net"`
	served := []answerCase{{"_acme-challenge.example.net.", mdns.TypeTXT, []string{netRR}}}
	notServed := func(t *testing.T, step, addr string) {
		t.Helper()
		r := exchange(t, addr, "udp", newQuery("_acme-challenge.example.net.", mdns.TypeTXT))
		if len(r.Answer) != 0 || r.Rcode != mdns.RcodeRefused {
			t.Errorf("%s: answered %s %q, want REFUSED", step, mdns.RcodeToString[r.Rcode], rrStrings(r.Answer))
		}
	}

	opts, _ := persistOptions(path)
	s1, addr1 := startServer(t, both, nil, opts)
	if err := s1.AddRecord(mustRR(t, netRR)); err != nil {
		t.Fatal(err)
	}
	netSerial := soaSerial(t, addr1, "example.net.")
	if err := s1.Reload(comOnly, nil); err != nil {
		t.Fatal(err)
	}
	notServed(t, "reloaded without the zone", addr1)

	opts, logs := persistOptions(path)
	s2, addr2 := startServer(t, comOnly, nil, opts)
	notServed(t, "restarted without the zone", addr2)
	if !strings.Contains(logs.String(), "zone that is not served") || !strings.Contains(logs.String(), "zone=example.net.") {
		t.Errorf("no log of the records kept for example.net:\n%s", logs)
	}
	// A change to another zone saves the file again, with them.
	if err := s2.AddRecord(mustRR(t, "api.example.com. 60 IN A 192.0.2.9")); err != nil {
		t.Fatal(err)
	}
	if err := s2.Reload(both, nil); err != nil {
		t.Fatal(err)
	}
	checkAnswers(t, "reloaded with the zone back", addr2, served)

	opts, _ = persistOptions(path)
	_, addr3 := startServer(t, both, nil, opts)
	checkAnswers(t, "restarted with the zone back", addr3, served)
	if got := soaSerial(t, addr3, "example.net."); got != netSerial {
		t.Errorf("example.net serial after it came back = %d, want %d", got, netSerial)
	}
}

// TestRecordsInMemoryOnly: without a records file nothing is written and
// a new server starts without the records.
func TestRecordsInMemoryOnly(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	s1, _ := startServer(t, cfg, nil, Options{})
	if err := s1.AddRecord(mustRR(t, "api.example.com. 60 IN A 192.0.2.9")); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("memory-only server wrote %v", entries)
	}
	_, addr2 := startServer(t, cfg, nil, Options{})
	checkAnswers(t, "new server", addr2, []answerCase{{"api.example.com.", mdns.TypeA, nil}})
}

// TestRecordsUnservedRemovable: saved records that are not served (the
// zone rejects them, or their zone is gone) are listed with the reason and
// can be removed through the admin API; nothing served changes.
func TestRecordsUnservedRemovable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns-records.json")
	file := `{"version":1,"zones":{
		"example.com.":{"records":["alias.example.com. 60 IN A 192.0.2.1"]},
		"gone.example.":{"records":["_acme-challenge.gone.example. 60 IN TXT \"t\""]}}}`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, _ := persistOptions(path)
	s, addr := startServer(t, testConfig(ZoneConfig{File: testdata("example.com.zone")}), nil, opts)
	serial := soaSerial(t, addr, "example.com.")
	admin := httptest.NewServer(s.AdminHandler())
	defer admin.Close()

	res, err := http.Get(admin.URL + "/v1/dns/records")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Unserved []UnservedJSON `json:"unserved"`
	}
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	want := map[string]string{"example.com.": "rejected by the zone", "gone.example.": "zone not served"}
	if len(list.Unserved) != 2 {
		t.Fatalf("unserved = %+v, want 2", list.Unserved)
	}
	for _, u := range list.Unserved {
		if want[u.Zone] != u.Reason {
			t.Errorf("unserved %+v: want reason %q", u, want[u.Zone])
		}
	}

	for _, q := range []string{
		"name=alias.example.com.&type=A&data=192.0.2.1",
		"name=_acme-challenge.gone.example.&type=TXT&data=%22t%22",
	} {
		req, _ := http.NewRequest(http.MethodDelete, admin.URL+"/v1/dns/records?"+q, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("DELETE ?%s: %d", q, res.StatusCode)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "alias.example.com") || strings.Contains(string(b), "gone.example") {
		t.Errorf("removed records still in the file:\n%s", b)
	}
	if u := s.Unserved(); len(u) != 0 {
		t.Errorf("still unserved: %+v", u)
	}
	if got := soaSerial(t, addr, "example.com."); got != serial {
		t.Errorf("serial moved %d -> %d for a record that was never served", serial, got)
	}
	if err := s.RemoveRecord(mustRR(t, "alias.example.com. 60 IN A 192.0.2.1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
}

// TestRecordsTempFilesFromCrash: a temp file a crash left beside the
// records file (written, never renamed) is removed at start; the records
// file itself is served as it was.
func TestRecordsTempFilesFromCrash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dns-records.json")
	rr := `_acme-challenge.example.com. 60 IN TXT "kept"`
	file := `{"version":1,"zones":{"example.com.":{"records":["` + strings.ReplaceAll(rr, `"`, `\"`) + `"]}}}`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	temp := filepath.Join(dir, ".dns-records.json.tmp4242")
	if err := os.WriteFile(temp, []byte(`{"version":1,"zo`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	opts, logs := persistOptions(path)
	_, addr := startServer(t, cfg, nil, opts)
	checkAnswers(t, "start", addr, []answerCase{{"_acme-challenge.example.com.", mdns.TypeTXT, []string{rr}}})
	if _, err := os.Stat(temp); !os.IsNotExist(err) {
		t.Errorf("temp file kept: %v", err)
	}
	if !strings.Contains(logs.String(), "removed temp files") {
		t.Errorf("no log line:\n%s", logs)
	}
}
