package dockerfile

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// forbidden are the packages a pure planner must not depend on.
var forbidden = []string{
	"github.com/strata-build/strata/exec",
	"github.com/strata-build/strata/snapshot",
	"github.com/strata-build/strata/registry",
	"github.com/strata-build/strata/copier",
	"github.com/strata-build/strata/builder",
	"golang.org/x/sys/unix",
}

func isForbidden(path string) bool {
	for _, f := range forbidden {
		if path == f || strings.HasPrefix(path, f+"/") {
			return true
		}
	}
	return false
}

func TestImportBoundary(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if isForbidden(p) {
				t.Errorf("%s imports %s", f, p)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no imports found: wrong directory?")
	}

	// Transitive dependencies, when the go tool is at hand.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found; transitive check skipped")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list failed: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if isForbidden(p) {
			t.Errorf("dockerfile depends on %s", p)
		}
	}
}
