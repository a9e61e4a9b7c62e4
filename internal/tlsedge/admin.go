package tlsedge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/outpost-edge/outpost/internal/httperr"
)

// CertInfo describes one managed name and the certificate serving it.
type CertInfo struct {
	// Name is the managed subject ("example.com", "*.example.com").
	Name string `json:"name"`
	// Names are the certificate's SANs; empty while none is held.
	Names     []string  `json:"names,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// Status is "valid", "expired" or "pending" (no certificate yet).
	Status       string    `json:"status"`
	LastObtained time.Time `json:"last_obtained,omitzero"`
	Renewals     int       `json:"renewals"`
	// LastError is the last failed order or renewal, kept until the next
	// success clears it.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastErrorRenewal says LastError came from renewing a certificate
	// the node still holds (true) rather than from obtaining one.
	LastErrorRenewal bool `json:"last_error_renewal,omitempty"`
}

// Certificates lists the configured names and any obtained on demand,
// sorted by name.
func (m *Manager) Certificates() []CertInfo {
	m.mu.Lock()
	names := make(map[string]nameStatus, len(m.status)+len(m.names))
	for n, st := range m.status {
		names[n] = *st
	}
	for _, n := range m.names {
		if _, ok := names[n]; !ok {
			names[n] = nameStatus{}
		}
	}
	m.mu.Unlock()
	now := time.Now()
	out := make([]CertInfo, 0, len(names))
	for n, st := range names {
		ci := CertInfo{Name: n, Status: "pending", LastObtained: st.lastObtained, Renewals: st.renewals}
		if st.lastErrorAt.After(st.lastObtained) {
			ci.LastError, ci.LastErrorAt, ci.LastErrorRenewal = st.lastError, st.lastErrorAt, st.lastErrorRenewal
		}
		if c := newest(m.src.Lookup(n)); c != nil {
			ci.Names = c.Leaf.DNSNames
			ci.Issuer = c.Leaf.Issuer.String()
			ci.Serial = fmt.Sprintf("%x", c.Leaf.SerialNumber)
			ci.NotBefore, ci.NotAfter = c.Leaf.NotBefore.UTC(), c.Leaf.NotAfter.UTC()
			ci.Status = "valid"
			if now.After(c.Leaf.NotAfter) {
				ci.Status = "expired"
			}
		}
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b CertInfo) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// newest picks the certificate that expires last, or nil.
func newest(cs []certView) *certView {
	var best *certView
	for i := range cs {
		if best == nil || cs[i].Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best = &cs[i]
		}
	}
	return best
}

// AdminHandler serves GET /v1/certificates. The lead mounts it behind the
// admin API's authentication; other paths answer 404.
func (m *Manager) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/certificates" {
			httperr.Write(w, r, http.StatusNotFound, "not_found", "no such admin endpoint")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httperr.Write(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			return
		}
		_ = json.NewEncoder(w).Encode(struct {
			Mode         string     `json:"mode"`
			Certificates []CertInfo `json:"certificates"`
		}{m.cfg.Mode, m.Certificates()})
	})
}
