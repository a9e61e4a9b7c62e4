// Package geodata embeds the default country geolocation database
// (geo-whois-asn-country, CC BY 4.0, data by the NRO via ip-location-db;
// see README.md for the attribution the licence requires).
package geodata

import (
	_ "embed"
	"unsafe"
)

// countryDB is a string rather than a []byte so that the embedded data is
// immutable package state.
//
//go:embed geo-whois-asn-country.mmdb
var countryDB string

// Attribution is the notice the CC BY 4.0 licence asks products to show.
const Attribution = "This product includes IP geolocation data from the NRO (nro.net), via ip-location-db."

// Country returns the embedded database bytes. The slice aliases read-only
// memory: callers must not modify it (the MaxMind reader never does).
func Country() []byte {
	return unsafe.Slice(unsafe.StringData(countryDB), len(countryDB))
}
