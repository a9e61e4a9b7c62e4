package cdn

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// directives is a parsed Cache-Control (or CDN-Cache-Control) field.
// Durations are -1 when the directive is absent.
type directives struct {
	maxAge, sMaxAge, swr, sie time.Duration
	maxStale, minFresh        time.Duration
	maxStaleAny               bool // max-stale without a value
	noStore, noCache, private bool
	public, mustRevalidate    bool
	proxyRevalidate           bool
	immutable, onlyIfCached   bool
	noTransform               bool
	// noCacheFields and privateFields list the field names of the qualified
	// forms (no-cache="Set-Cookie"); those fields are not stored.
	noCacheFields, privateFields []string
}

const maxDelta = 100 * 365 * 24 * time.Hour // RFC 9111 §1.2.2: cap delta-seconds

// parseDirectives parses the comma-separated directives of every value of
// the named fields. Unknown directives are ignored; a malformed value for a
// duration directive makes it behave as the most conservative reading
// (max-age=0) rather than being dropped, per RFC 9111 §4.2.1.
func parseDirectives(values []string) directives {
	d := directives{maxAge: -1, sMaxAge: -1, swr: -1, sie: -1, maxStale: -1, minFresh: -1}
	for _, v := range values {
		for len(v) > 0 {
			var item string
			item, v = nextItem(v)
			name, arg, hasArg := strings.Cut(item, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			arg = strings.TrimSpace(arg)
			if len(arg) >= 2 && arg[0] == '"' && arg[len(arg)-1] == '"' {
				arg = arg[1 : len(arg)-1]
			}
			// A directive given twice counts once, the first time (RFC 9111
			// §4.2.1): a later max-age must not lengthen an earlier one.
			switch name {
			case "max-age":
				d.maxAge = firstDelta(d.maxAge, arg)
			case "s-maxage":
				d.sMaxAge = firstDelta(d.sMaxAge, arg)
			case "stale-while-revalidate":
				d.swr = firstDelta(d.swr, arg)
			case "stale-if-error":
				d.sie = firstDelta(d.sie, arg)
			case "max-stale":
				if hasArg {
					d.maxStale = parseDelta(arg)
				} else {
					d.maxStaleAny = true
				}
			case "min-fresh":
				d.minFresh = parseDelta(arg)
			case "no-store":
				d.noStore = true
			case "no-cache":
				if hasArg && arg != "" {
					d.noCacheFields = append(d.noCacheFields, splitFields(arg)...)
				} else {
					d.noCache = true
				}
			case "private":
				if hasArg && arg != "" {
					d.privateFields = append(d.privateFields, splitFields(arg)...)
				} else {
					d.private = true
				}
			case "public":
				d.public = true
			case "must-revalidate":
				d.mustRevalidate = true
			case "proxy-revalidate":
				d.proxyRevalidate = true
			case "immutable":
				d.immutable = true
			case "only-if-cached":
				d.onlyIfCached = true
			case "no-transform":
				d.noTransform = true
			}
		}
	}
	return d
}

// nextItem splits off one comma-separated item, honouring quoted strings
// (no-cache="a, b" is one item).
func nextItem(s string) (item, rest string) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case '\\':
			if inQuote {
				i++
			}
		case ',':
			if !inQuote {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

func splitFields(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, http.CanonicalHeaderKey(f))
		}
	}
	return out
}

// firstDelta is cur if a directive was already seen (cur >= 0), else arg
// parsed.
func firstDelta(cur time.Duration, arg string) time.Duration {
	if cur >= 0 {
		return cur
	}
	return parseDelta(arg)
}

// parseDelta parses delta-seconds. Invalid values (negative, not a number)
// read as 0; huge values are capped.
func parseDelta(s string) time.Duration {
	if s == "" {
		return 0
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > int64(maxDelta/time.Second) {
		return maxDelta
	}
	return time.Duration(n) * time.Second
}

// parseAge parses an Age header: the first value, non-negative integer
// seconds; anything else is ignored (0). Huge values are capped.
func parseAge(h http.Header) time.Duration {
	v := h.Get("Age")
	if v == "" {
		return 0
	}
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	v = strings.TrimSpace(v)
	if v == "" || v[0] == '-' {
		return 0
	}
	return parseDelta(v)
}

// httpDateLayouts are the three HTTP-date forms (RFC 9110 §5.6.7):
// IMF-fixdate, rfc850-date and asctime-date.
var httpDateLayouts = [...]string{http.TimeFormat, time.RFC850, time.ANSIC}

// parseHTTPDate parses an HTTP-date; ok is false for anything invalid.
// time.Parse also takes what the grammar does not (one-digit hours, names
// in any case, extra spaces, other zones), so a value only counts if it is
// what its time formats back to. The weekday is only checked to be a
// weekday's name: the grammar leaves its agreement with the date alone.
func parseHTTPDate(v string) (time.Time, bool) {
	if v == "" {
		return time.Time{}, false
	}
	for _, layout := range httpDateLayouts {
		t, err := time.Parse(layout, v)
		if err != nil || layout == time.RFC850 && !strings.HasSuffix(v, " GMT") {
			continue
		}
		var buf [40]byte
		out := t.AppendFormat(buf[:0], layout)
		i, j := strings.IndexAny(v, ", "), bytes.IndexAny(out, ", ")
		if i > 0 && j > 0 && v[i:] == string(out[j:]) && weekdayName(v[:i], layout == time.RFC850) {
			return t, true
		}
	}
	return time.Time{}, false
}

// weekdayName reports whether s is a day-name (Mon) or, long, a
// day-name-l (Monday), in its exact case.
func weekdayName(s string, long bool) bool {
	for d := time.Sunday; d <= time.Saturday; d++ {
		if n := d.String(); s == n || !long && s == n[:3] {
			return true
		}
	}
	return false
}
