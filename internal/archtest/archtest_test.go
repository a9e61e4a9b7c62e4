package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/outpost-edge/outpost"

var core = []string{"dns", "cdn", "lb", "gateway"}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

type pkg struct {
	dir     string
	hasDoc  bool
	imports map[string]string // import path → file that imports it
}

func packages(t *testing.T) map[string]*pkg {
	root := repoRoot(t)
	out := map[string]*pkg{}
	fset := token.NewFileSet()
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.ImportsOnly)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		p := out[rel]
		if p == nil {
			p = &pkg{dir: rel, imports: map[string]string{}}
			out[rel] = p
		}
		isTest := strings.HasSuffix(path, "_test.go")
		if f.Doc != nil && !isTest {
			p.hasDoc = true
		}
		if isTest {
			return nil
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			p.imports[ip] = path
		}
		return nil
	})
	return out
}

func TestEveryPackageHasDoc(t *testing.T) {
	for dir, p := range packages(t) {
		onlyTests := true
		entries, _ := os.ReadDir(filepath.Join(repoRoot(t), dir))
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".go") && !strings.HasSuffix(e.Name(), "_test.go") {
				onlyTests = false
			}
		}
		if !onlyTests && !p.hasDoc {
			t.Errorf("package %s has no package doc comment", dir)
		}
	}
}

func TestCorePackagesDoNotImportEachOther(t *testing.T) {
	for dir, p := range packages(t) {
		top := strings.SplitN(filepath.ToSlash(dir), "/", 2)[0]
		if !isCore(top) {
			continue
		}
		for ip, file := range p.imports {
			rest, ok := strings.CutPrefix(ip, module+"/")
			if !ok {
				continue
			}
			other := strings.SplitN(rest, "/", 2)[0]
			if other != top && isCore(other) {
				t.Errorf("%s imports %s: core packages meet only in the node wiring", file, ip)
			}
			if strings.HasPrefix(rest, "internal/node") || strings.HasPrefix(rest, "cmd/") {
				t.Errorf("%s imports %s: the wiring depends on core packages, not the reverse", file, ip)
			}
		}
	}
}

func isCore(name string) bool {
	for _, c := range core {
		if c == name {
			return true
		}
	}
	return false
}

// testSupport are packages that exist for tests (a real ACME server, a
// tiny disk to fill, a log sink, a Redis starter, a fake clock): non-test code never
// imports them, so what they pull in (Pebble) never reaches the outpost
// binary.
var testSupport = []string{"internal/acmetest", "internal/disktest", "internal/logtest", "internal/redistest", "internal/testclock"}

func TestTestSupportOnlyInTests(t *testing.T) {
	for _, p := range packages(t) {
		for ip, file := range p.imports {
			rest, _ := strings.CutPrefix(ip, module+"/")
			for _, ts := range testSupport {
				if rest == ts && filepath.ToSlash(p.dir) != ts {
					t.Errorf("%s imports %s, which is for tests only", file, ip)
				}
			}
		}
	}
}
