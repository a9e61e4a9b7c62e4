package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/outpost-edge/outpost/internal/configerr"
)

// decoder turns one YAML document into a struct strictly: unknown keys are
// errors, every error carries file, line and field path, and ${ENV_VAR}
// references in scalar values are expanded. Expansion happens on the parsed
// tree, never on the raw text, so a variable's value can't inject YAML.
type decoder struct {
	file   string
	lookup func(string) (string, bool)
	lines  map[string]int // field path → line of its key (or value)
	errs   configerr.List
	// done marks the scalars already expanded: an anchored value is
	// reached again through each alias, and expanding "$$" twice would
	// eat a "$".
	done map[*yaml.Node]bool
	// expanded maps a field path to its text before and after expansion,
	// and secrets lists the variables' values: errors quote values, and
	// a value from the environment is shown as the reference instead.
	expanded map[string][2]string
	secrets  [][2]string // name, value
}

func newDecoder(file string, lookup func(string) (string, bool)) *decoder {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return &decoder{file: file, lookup: lookup, lines: map[string]int{"": 1},
		done: map[*yaml.Node]bool{}, expanded: map[string][2]string{}}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}|\$\$`)

// expand replaces ${VAR} and ${VAR:-default}; "$$" is a literal "$".
func (d *decoder) expand(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "$") || d.done[n] {
		return
	}
	d.done[n] = true
	raw := n.Value
	fromEnv := false
	n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := envRef.FindStringSubmatch(m)
		if v, ok := d.lookup(sub[1]); ok && v != "" {
			fromEnv = true
			d.secrets = append(d.secrets, [2]string{sub[1], v})
			return v
		}
		if sub[2] != "" {
			return sub[3]
		}
		d.addAt(path, n.Line, fmt.Sprintf("environment variable %s is not set", sub[1]))
		return ""
	})
	if fromEnv && n.Value != "" {
		d.expanded[path] = [2]string{raw, n.Value}
	}
	// A quoted style marker would stop "${PORT}" from decoding as an int:
	// the value now stands for itself.
	if n.Tag == "!!str" && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
		n.Tag = ""
	}
}

func (d *decoder) addAt(path string, line int, msg string) {
	d.errs.Merge("", &configerr.FieldError{Path: path, Msg: msg, File: d.file, Line: line})
}

// decode checks n against v's type (recording unknown keys and lines) and
// then decodes it into v. It reports whether v is worth validating.
func (d *decoder) decode(n *yaml.Node, v any) bool {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return true
		}
		n = n.Content[0]
	}
	ok := d.walk(n, reflect.TypeOf(v).Elem(), "")
	if !ok {
		return false
	}
	if err := n.Decode(v); err != nil {
		// Type errors the walk did not catch (custom unmarshalers).
		if te, ok := err.(*yaml.TypeError); ok {
			for _, e := range te.Errors {
				d.addAt("", lineOf(e), trimYAMLLine(e))
			}
			return false
		}
		d.addAt("", 0, err.Error())
		return false
	}
	return true
}

var yamlLine = regexp.MustCompile(`^line (\d+): `)

func lineOf(msg string) int {
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func trimYAMLLine(msg string) string { return yamlLine.ReplaceAllString(msg, "") }

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// walk validates the node's shape against t. It returns false when errors
// were found that make decoding pointless.
func (d *decoder) walk(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if _, seen := d.lines[path]; !seen {
		d.lines[path] = n.Line
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		d.expand(n, path)
		if n.Kind == yaml.ScalarNode {
			var probe = reflect.New(t).Interface().(yaml.Unmarshaler)
			if err := probe.UnmarshalYAML(n); err != nil {
				d.addAt(path, n.Line, err.Error())
				return false
			}
		}
		return true
	}
	ok := true
	switch t.Kind() {
	case reflect.Struct:
		if t.PkgPath() == "net/netip" || t.String() == "time.Time" {
			d.expand(n, path)
			return d.checkScalar(n, t, path)
		}
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return true
		}
		if n.Kind != yaml.MappingNode {
			d.addAt(path, n.Line, fmt.Sprintf("want a mapping, got %s", kindName(n)))
			return false
		}
		fields := structFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.Tag == "!!merge" {
				// Merged keys are checked (and expanded) like the
				// block's own; keys written in the block override them.
				if !d.walkMerge(val, t, path) {
					ok = false
				}
				continue
			}
			p := configerr.Join(path, k.Value)
			d.lines[p] = k.Line
			f, found := fields[k.Value]
			if !found {
				// Not fatal: decoding ignores the key, so validation can
				// still report every other problem in the same run.
				d.addAt(p, k.Line, fmt.Sprintf("unknown key %q (want one of %s)", k.Value, strings.Join(sortedKeys(fields), ", ")))
				continue
			}
			if seen[k.Value] {
				d.addAt(p, k.Line, "duplicate key")
				ok = false
				continue
			}
			seen[k.Value] = true
			if !d.walk(val, f, p) {
				ok = false
			}
		}
	case reflect.Map:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return true
		}
		if n.Kind != yaml.MappingNode {
			d.addAt(path, n.Line, fmt.Sprintf("want a mapping, got %s", kindName(n)))
			return false
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := configerr.Join(path, k.Value)
			d.lines[p] = k.Line
			if !d.walk(val, t.Elem(), p) {
				ok = false
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 { // []byte from a string
			d.expand(n, path)
			return true
		}
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return true
		}
		if n.Kind != yaml.SequenceNode {
			d.addAt(path, n.Line, fmt.Sprintf("want a list, got %s", kindName(n)))
			return false
		}
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if !d.walk(item, t.Elem(), p) {
				ok = false
			}
		}
	case reflect.Interface:
		d.expandAll(n, path)
	default:
		d.expand(n, path)
		return d.checkScalar(n, t, path)
	}
	return ok
}

// walkMerge walks the value of a "<<" merge key: a mapping, an alias to
// one, or a list of them.
func (d *decoder) walkMerge(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return d.walk(n, t, path)
	case yaml.SequenceNode:
		ok := true
		for _, c := range n.Content {
			if c.Kind == yaml.AliasNode {
				c = c.Alias
			}
			if c.Kind != yaml.MappingNode {
				d.addAt(path, c.Line, "a << merge takes a mapping or a list of mappings")
				return false
			}
			if !d.walk(c, t, path) {
				ok = false
			}
		}
		return ok
	}
	d.addAt(path, n.Line, "a << merge takes a mapping or a list of mappings")
	return false
}

// redact rewrites err so that no value taken from the environment is
// printed: the field's expanded value becomes its text in the file
// ("${REDIS_PASSWORD}"), and any variable's value (six characters or more,
// so short ones such as "80" don't garble unrelated text) found elsewhere
// becomes its reference.
func (d *decoder) redact(err error) error {
	if err == nil || len(d.secrets) == 0 {
		return err
	}
	var l configerr.List
	for _, fe := range configerr.Fields(err) {
		c := *fe
		if e, ok := d.expanded[c.Path]; ok {
			c.Msg = replaceValue(c.Msg, e[1], e[0])
		}
		for _, s := range d.secrets {
			if len(s[1]) >= 6 {
				c.Msg = replaceValue(c.Msg, s[1], "${"+s[0]+"}")
			}
		}
		l.Merge("", &c)
	}
	return l.Err()
}

// replaceValue replaces v in msg, as is and as %q would escape it.
func replaceValue(msg, v, with string) string {
	msg = strings.ReplaceAll(msg, v, with)
	if q := strconv.Quote(v); q[1:len(q)-1] != v {
		msg = strings.ReplaceAll(msg, q[1:len(q)-1], with)
	}
	return msg
}

func (d *decoder) expandAll(n *yaml.Node, path string) {
	d.expand(n, path)
	for _, c := range n.Content {
		d.expandAll(c, path)
	}
}

// checkScalar decodes a scalar into a throwaway value of type t to report
// type errors with the field path (yaml's own message lacks it).
func (d *decoder) checkScalar(n *yaml.Node, t reflect.Type, path string) bool {
	if n.Kind != yaml.ScalarNode {
		d.addAt(path, n.Line, fmt.Sprintf("want a %s, got %s", typeName(t), kindName(n)))
		return false
	}
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err != nil {
		d.addAt(path, n.Line, fmt.Sprintf("want a %s, got %q", typeName(t), n.Value))
		return false
	}
	return true
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "whole number"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	}
	if t.PkgPath() == "net/netip" {
		return "IP address"
	}
	return t.String()
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// structFields maps yaml names to field types, following inline embeds.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range structFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Small maps; insertion sort keeps this dependency-free and stable.
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// lineFor finds the line of path or of its nearest known ancestor.
func (d *decoder) lineFor(path string) int {
	for {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return d.lines[""]
		}
		path = path[:i]
	}
}
