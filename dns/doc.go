// Package dns is Outpost's authoritative DNS server: zones from RFC 1035
// files and config records, answered per RFC 1034/2308/4592, plus steered
// names answered per query with the nearest healthy edge nodes (client
// location from EDNS Client Subnet or the source address, looked up in a
// MaxMind-format country database).
//
// The server also does response rate limiting, AXFR/IXFR to configured
// secondaries with TSIG, NOTIFY on change, and exposes a runtime records API
// (used for ACME DNS-01 challenges) with an admin HTTP handler.
//
// Long-lived state (metrics, health checker, runtime records) is created
// once by New and survives Reload; zone data is an immutable snapshot that
// Reload and record changes swap atomically.
package dns
