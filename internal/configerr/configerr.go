// Package configerr carries configuration validation errors that name the
// field they are about, so the config loader can point at file and line.
//
// Each package validates its own config section and reports problems with
// paths relative to that section ("backends[2].weight"). The loader prefixes
// the section path ("pools.api.") and resolves the line from the YAML tree.
package configerr

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError is one problem with one config field.
type FieldError struct {
	Path string // dotted path, e.g. "pools.api.backends[2].weight"; "" for the section itself
	Msg  string // what is wrong and what was expected
	File string // set by the loader
	Line int    // set by the loader; 0 when unknown
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// List collects field errors. The zero value is ready to use.
type List struct {
	errs []*FieldError
}

// Addf records a problem at path.
func (l *List) Addf(path, format string, args ...any) {
	l.errs = append(l.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Merge adds every FieldError found in err (as returned by a nested
// Validate) with prefix prepended to its path. Errors that are not
// FieldErrors are recorded at prefix itself.
func (l *List) Merge(prefix string, err error) {
	if err == nil {
		return
	}
	for _, fe := range Fields(err) {
		c := *fe
		c.Path = Join(prefix, c.Path)
		l.errs = append(l.errs, &c)
	}
}

// Len reports how many errors were recorded.
func (l *List) Len() int { return len(l.errs) }

// Err returns nil when nothing was recorded, else an error that unwraps to
// every *FieldError (errors.Join semantics).
func (l *List) Err() error {
	if len(l.errs) == 0 {
		return nil
	}
	errs := make([]error, len(l.errs))
	for i, e := range l.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// Fields flattens err into its FieldErrors. A plain error becomes a
// FieldError with an empty path.
func Fields(err error) []*FieldError {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*FieldError
		for _, e := range j.Unwrap() {
			out = append(out, Fields(e)...)
		}
		return out
	}
	if errors.As(err, &fe) {
		return []*FieldError{fe}
	}
	return []*FieldError{{Msg: err.Error()}}
}

// Join joins two path parts: Join("pools.api", "weight") = "pools.api.weight",
// Join("backends", "[2]") = "backends[2]".
func Join(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case strings.HasPrefix(path, "["):
		return prefix + path
	default:
		return prefix + "." + path
	}
}

// Partial reports a reload that was checked, then applied, but where a
// step still failed while applying (a zone file edited between the check
// and the apply, say). Unlike every other reload error, the new config IS
// in force, as Generation, except for the part Err names.
type Partial struct {
	Generation uint64
	Err        error
}

func (p *Partial) Error() string {
	return fmt.Sprintf("config applied as generation %d, but: %v", p.Generation, p.Err)
}

func (p *Partial) Unwrap() error { return p.Err }
