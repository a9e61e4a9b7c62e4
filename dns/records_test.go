package dns

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

func mustRR(t testing.TB, s string) mdns.RR {
	t.Helper()
	rr, err := mdns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// TestRuntimeRecords adds and removes an ACME challenge TXT record and
// checks queries see it at once with the serial bumped.
func TestRuntimeRecords(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	s, addr := startServer(t, cfg, nil, Options{})
	serial0, _ := s.Serial("example.com")
	txt := mustRR(t, `_acme-challenge.www.example.com. 60 IN TXT "token-1"`)
	if err := s.AddRecord(txt); err != nil {
		t.Fatal(err)
	}
	r := exchange(t, addr, "udp", newQuery("_acme-challenge.WWW.example.com.", mdns.TypeTXT))
	if got := rrStrings(r.Answer); !slices.Equal(got, want(t, []string{txt.String()})) {
		t.Fatalf("after add: answer %q", got)
	}
	r = exchange(t, addr, "udp", newQuery("example.com.", mdns.TypeSOA))
	serial1 := r.Answer[0].(*mdns.SOA).Serial
	if serial1 != serial0+1 {
		t.Fatalf("serial after add = %d, want %d", serial1, serial0+1)
	}
	// Adding the same record again is a no-op.
	if err := s.AddRecord(txt); err != nil {
		t.Fatal(err)
	}
	if sr, _ := s.Serial("example.com"); sr != serial1 {
		t.Fatalf("duplicate add bumped the serial to %d", sr)
	}
	found := false
	for _, rr := range s.Records("example.com.") {
		found = found || mdns.IsDuplicate(rr, txt)
	}
	if !found {
		t.Fatal("Records does not list the runtime record")
	}
	// Remove ignores the TTL.
	if err := s.RemoveRecord(mustRR(t, `_acme-challenge.www.example.com. 1 IN TXT "token-1"`)); err != nil {
		t.Fatal(err)
	}
	r = exchange(t, addr, "udp", newQuery("_acme-challenge.www.example.com.", mdns.TypeTXT))
	if r.Rcode != mdns.RcodeNameError {
		t.Fatalf("after remove: rcode %s", mdns.RcodeToString[r.Rcode])
	}
	if sr, _ := s.Serial("example.com"); sr != serial0+2 {
		t.Fatalf("serial after remove = %d, want %d", sr, serial0+2)
	}
	if err := s.RemoveRecord(txt); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v, want ErrNotFound", err)
	}
	if err := s.RemoveRecord(mustRR(t, "www.example.com. 3600 IN A 192.0.2.80")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing a file record: %v, want ErrNotFound", err)
	}
	if err := s.AddRecord(mustRR(t, `x.example.org. 60 IN TXT "x"`)); !errors.Is(err, ErrNoZone) {
		t.Fatalf("out of zone add: %v, want ErrNoZone", err)
	}
	if err := s.AddRecord(mustRR(t, "example.com. 60 IN SOA a. b. 1 2 3 4 5")); !errors.Is(err, ErrBadType) {
		t.Fatalf("SOA add: %v, want ErrBadType", err)
	}
	if err := s.AddRecord(mustRR(t, "alias.example.com. 60 IN A 192.0.2.1")); err == nil {
		t.Fatal("A next to a CNAME was accepted")
	}
	// Runtime records survive a reload.
	if err := s.AddRecord(txt); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(cfg, nil); err != nil {
		t.Fatal(err)
	}
	r = exchange(t, addr, "tcp", newQuery("_acme-challenge.www.example.com.", mdns.TypeTXT))
	if len(r.Answer) != 1 {
		t.Fatalf("runtime record lost on reload: %v", r)
	}
}

func TestAdminHandler(t *testing.T) {
	cfg := testConfig(ZoneConfig{File: testdata("example.com.zone")})
	s, addr := startServer(t, cfg, nil, Options{})
	h := s.AdminHandler()
	do := func(method, target, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	tests := []struct {
		method, target, body string
		status               int
		contains             string
	}{
		{"POST", "/v1/dns/records", `{"name":"_acme-challenge.example.com","type":"TXT","data":"\"abc\""}`, http.StatusCreated, `"serial"`},
		{"POST", "/v1/dns/records", `{"rr":"api.example.com. 30 IN A 192.0.2.9"}`, http.StatusCreated, `192.0.2.9`},
		{"POST", "/v1/dns/records", `{"name":"x.example.org","type":"TXT","data":"\"abc\""}`, http.StatusUnprocessableEntity, "no_zone"},
		{"POST", "/v1/dns/records", `{"name":"x.example.com","type":"BOGUS","data":"1"}`, http.StatusBadRequest, "bad_record"},
		{"POST", "/v1/dns/records", `{"name":"x.example.com","type":"A","data":"not-an-ip"}`, http.StatusBadRequest, "bad_record"},
		{"POST", "/v1/dns/records", `{"nope":1}`, http.StatusBadRequest, "bad_record"},
		{"GET", "/v1/dns/records?zone=example.com", "", http.StatusOK, `_acme-challenge.example.com.`},
		{"GET", "/v1/dns/records", "", http.StatusOK, `"zone": "example.com."`},
		{"GET", "/v1/dns/records?zone=nope.test", "", http.StatusNotFound, "no_zone"},
		// The answer shows the record as it was stored (TTL 30), not the
		// request's default TTL.
		{"DELETE", "/v1/dns/records?name=api.example.com&type=A&data=192.0.2.9", "", http.StatusOK, `"ttl": 30,`},
		{"DELETE", "/v1/dns/records", `{"name":"_acme-challenge.example.com","type":"TXT","data":"\"abc\""}`, http.StatusOK, `"record"`},
		{"DELETE", "/v1/dns/records", `{"name":"_acme-challenge.example.com","type":"TXT","data":"\"abc\""}`, http.StatusNotFound, "not_found"},
		{"PUT", "/v1/dns/records", ``, http.StatusMethodNotAllowed, "method_not_allowed"},
		{"GET", "/v1/dns/other", ``, http.StatusNotFound, "not_found"},
	}
	for _, tc := range tests {
		rec := do(tc.method, tc.target, tc.body)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("%s %s %s: %d %s, want %d containing %q", tc.method, tc.target, tc.body, rec.Code, rec.Body, tc.status, tc.contains)
		}
	}
	rec := do("POST", "/v1/dns/records", `{"name":"_acme-challenge.example.com.","type":"TXT","ttl":120,"data":"\"xyz\""}`)
	var out struct {
		Record RecordJSON `json:"record"`
		Serial uint32     `json:"serial"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Record.TTL != 120 || out.Record.Type != "TXT" || out.Record.Data != `"xyz"` {
		t.Fatalf("record echo %+v", out.Record)
	}
	r := exchange(t, addr, "udp", newQuery("_acme-challenge.example.com.", mdns.TypeTXT))
	if len(r.Answer) != 1 || r.Answer[0].(*mdns.TXT).Txt[0] != "xyz" {
		t.Fatalf("admin-added record not served: %v", r.Answer)
	}
}
