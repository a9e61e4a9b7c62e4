package cdn

import "strings"

// validTargeted reports whether v, a targeted cache-control field value
// (RFC 9213), is a valid Structured Field Dictionary (RFC 8941 §4.2.2)
// whose delta-seconds directives are integers. A targeted field that is not
// is ignored as if absent (RFC 9213 §2.1), so Cache-Control applies.
func validTargeted(v string) bool {
	p := sfParser{s: strings.Trim(v, " ")}
	if p.s == "" {
		return false
	}
	for {
		key, ok := p.key()
		if !ok {
			return false
		}
		isInt := false
		if p.peek() == '=' {
			p.i++
			if isInt, ok = p.member(); !ok {
				return false
			}
		} else if !p.params() {
			return false
		}
		switch key {
		case "max-age", "s-maxage", "stale-while-revalidate", "stale-if-error":
			if !isInt {
				return false
			}
		}
		p.ows()
		if p.i == len(p.s) {
			return true
		}
		if p.s[p.i] != ',' {
			return false
		}
		p.i++
		p.ows()
		if p.i == len(p.s) {
			return false // a trailing comma
		}
	}
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *sfParser) ows() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *sfParser) sp() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func lcalpha(c byte) bool { return c >= 'a' && c <= 'z' }
func digit(c byte) bool   { return c >= '0' && c <= '9' }
func alpha(c byte) bool   { return lcalpha(c) || c >= 'A' && c <= 'Z' }

// key: ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ).
func (p *sfParser) key() (string, bool) {
	start := p.i
	if c := p.peek(); !lcalpha(c) && c != '*' {
		return "", false
	}
	p.i++
	for p.i < len(p.s) {
		c := p.s[p.i]
		if !lcalpha(c) && !digit(c) && !strings.ContainsRune("_-.*", rune(c)) {
			break
		}
		p.i++
	}
	return p.s[start:p.i], true
}

// member: an item or an inner list, with parameters; isInt when it is an
// integer item.
func (p *sfParser) member() (isInt, ok bool) {
	if p.peek() != '(' {
		isInt, ok = p.bareItem()
		return isInt, ok && p.params()
	}
	p.i++
	for {
		p.sp()
		if p.peek() == ')' {
			p.i++
			return false, p.params()
		}
		if _, ok := p.bareItem(); !ok || !p.params() {
			return false, false
		}
		if c := p.peek(); c != ' ' && c != ')' {
			return false, false
		}
	}
}

// params: *( ";" *SP key [ "=" bare-item ] ).
func (p *sfParser) params() bool {
	for p.peek() == ';' {
		p.i++
		p.sp()
		if _, ok := p.key(); !ok {
			return false
		}
		if p.peek() == '=' {
			p.i++
			if _, ok := p.bareItem(); !ok {
				return false
			}
		}
	}
	return true
}

// bareItem: integer, decimal, string, token, byte sequence or boolean.
func (p *sfParser) bareItem() (isInt, ok bool) {
	c := p.peek()
	switch {
	case c == '-' || digit(c):
		return p.number()
	case c == '"':
		for p.i++; p.i < len(p.s); p.i++ {
			switch c := p.s[p.i]; {
			case c == '\\':
				p.i++
				if p.i == len(p.s) || p.s[p.i] != '"' && p.s[p.i] != '\\' {
					return false, false
				}
			case c == '"':
				p.i++
				return false, true
			case c < 0x20 || c > 0x7e:
				return false, false
			}
		}
		return false, false
	case alpha(c) || c == '*':
		for p.i++; p.i < len(p.s); p.i++ {
			c := p.s[p.i]
			if !alpha(c) && !digit(c) && !strings.ContainsRune("!#$%&'*+-.^_`|~:/", rune(c)) {
				break
			}
		}
		return false, true
	case c == ':':
		for p.i++; p.i < len(p.s); p.i++ {
			c := p.s[p.i]
			if c == ':' {
				p.i++
				return false, true
			}
			if !alpha(c) && !digit(c) && c != '+' && c != '/' && c != '=' {
				return false, false
			}
		}
		return false, false
	case c == '?':
		p.i++
		if c := p.peek(); c != '0' && c != '1' {
			return false, false
		}
		p.i++
		return false, true
	}
	return false, false
}

// number: ["-"] 1*15DIGIT, or ["-"] 1*12DIGIT "." 1*3DIGIT.
func (p *sfParser) number() (isInt, ok bool) {
	if p.peek() == '-' {
		p.i++
	}
	start := p.i
	for p.i < len(p.s) && digit(p.s[p.i]) {
		p.i++
	}
	n := p.i - start
	if p.peek() != '.' {
		return true, n >= 1 && n <= 15
	}
	p.i++
	fstart := p.i
	for p.i < len(p.s) && digit(p.s[p.i]) {
		p.i++
	}
	f := p.i - fstart
	return false, n >= 1 && n <= 12 && f >= 1 && f <= 3
}
