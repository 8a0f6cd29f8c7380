package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// conformanceParallel is how many corpus cases build at once.
const conformanceParallel = 2

// TestConformance runs every case of the shared Dockerfile corpus as the
// corpus README specifies, one subtest per case.
func TestConformance(t *testing.T) {
	f := needRoot(t)
	// The shared corpus, then our own cases (one per bug fixed or feature
	// added) in the same format.
	var cases []string
	for _, dir := range []string{corpusDir, ownCasesDir} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("corpus: %v", err)
		}
		n := 0
		for _, e := range ents {
			if e.IsDir() {
				cases = append(cases, filepath.Join(dir, e.Name()))
				n++
			}
		}
		if n == 0 {
			t.Fatalf("no cases in %s", dir)
		}
	}
	sem := make(chan struct{}, conformanceParallel)
	for _, dir := range cases {
		name := filepath.Base(dir)
		if filepath.Dir(dir) == ownCasesDir {
			name = "own/" + name
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			runCase(t, f, dir)
			t.Logf("case took %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

// phaseImage is what a successful phase built.
type phaseImage struct {
	img    *ociImage
	rootfs string
}

func runCase(t *testing.T, f *fixture, dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "expect"))
	if err != nil {
		t.Fatal(err)
	}
	exp, err := ParseExpect(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	if usesDebian(t, dir) {
		f.debian(t)
	}
	ctxDir := filepath.Join(t.TempDir(), "context")
	if err := normaliseContext(filepath.Join(dir, "context"), ctxDir); err != nil {
		t.Fatalf("preparing the context: %v", err)
	}
	if err := restoreDeclaredLinks(ctxDir, b); err != nil {
		t.Fatalf("preparing the context: %v", err)
	}
	root := filepath.Join(t.TempDir(), "root")
	args := map[string]string{}
	var argOrder []string
	target, dockerfile := "", "Dockerfile"
	var prev *phaseImage
	for i, ph := range exp.Phases {
		label := fmt.Sprintf("phase %d", i+1)
		if ph.Line > 0 {
			label += fmt.Sprintf(" (rebuild at expect:%d)", ph.Line)
		}
		for _, a := range ph.BuildArgs {
			if _, ok := args[a.Name]; !ok {
				argOrder = append(argOrder, a.Name)
			}
			args[a.Name] = a.Value
		}
		if ph.Target != nil {
			target = *ph.Target
		}
		if ph.Dockerfile != nil {
			dockerfile = *ph.Dockerfile
		}
		for _, m := range ph.Mutations {
			if err := mutate(ctxDir, m); err != nil {
				t.Fatalf("%s: expect:%d: %s: %v", label, m.Line, m.Op, err)
			}
		}
		abs, err := filepath.Abs(filepath.Join(dir, dockerfile))
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "oci")
		tag := fmt.Sprintf("phase%d", i+1)
		o := buildOpts{root: root, context: ctxDir, dockerfile: abs, target: target, noCache: ph.NoCache,
			tags: []string{tag}, outputs: []string{"type=oci,dest=" + out}, mirror: true}
		for _, k := range argOrder {
			o.buildArgs = append(o.buildArgs, k+"="+args[k])
		}
		before := mounts(t)
		buildStart := time.Now()
		r := build(t, o)
		t.Logf("%s: build %s (exit %d)", label, time.Since(buildStart).Round(time.Millisecond), r.code)
		checkRootClean(t, label, root, before)
		if ph.Error != nil {
			if !checkFailure(t, label, ph.Error, r) {
				return
			}
			prev = nil
			continue
		}
		if r.code != 0 {
			t.Errorf("%s: build failed, want success:\n%s", label, tail(r.stderr, 40))
			return
		}
		img := readLayout(t, out, tag)
		validateLayout(t, out)
		unpackStart := time.Now()
		cur := &phaseImage{img: img, rootfs: umociUnpack(t, out, img.tag)}
		t.Logf("%s: umoci unpack %s", label, time.Since(unpackStart).Round(time.Millisecond))
		c := &checker{cur: cur, prev: prev, baseLayers: baseLayers(f, img)}
		for _, a := range ph.Assertions {
			if err := c.check(a); err != nil {
				t.Errorf("%s: %s: %v", label, a, err)
			}
		}
		prev = cur
	}
}

func usesDebian(t *testing.T, dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "Dockerfile*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("debian")) {
			return true
		}
	}
	return false
}

// baseLayers is the layer count of the external base image the final
// stage is ultimately built FROM: the bases are single-layer images, so it
// is 1 when the image starts with a base's layer and 0 (scratch) otherwise.
func baseLayers(f *fixture, img *ociImage) int {
	ids := img.config.RootFS.DiffIDs
	for _, base := range [][]string{f.busyboxDiffIDs, f.debianDiffIDs} {
		if len(base) > 0 && len(ids) >= len(base) && strings.Join(ids[:len(base)], ",") == strings.Join(base, ",") {
			return len(base)
		}
	}
	return 0
}

// normaliseContext copies src (absent = empty) to dst with the modes the
// corpus README fixes: dirs 0755, files 0644 or 0755, symlinks kept.
func normaliseContext(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if _, err := os.Lstat(src); os.IsNotExist(err) {
		return nil
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case d.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return os.Chmod(target, 0o755)
		case d.Type().IsRegular():
			mode := os.FileMode(0o644)
			if info.Mode()&0o100 != 0 {
				mode = 0o755
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, b, mode); err != nil {
				return err
			}
			return os.Chmod(target, mode)
		}
		return fmt.Errorf("%s: unsupported file type %s", p, d.Type())
	})
}

// restoreDeclaredLinks turns back into symlinks the context files that a
// checkout without symlink support wrote as plain files holding the link
// target (git's core.symlinks=false form). Only links the expect file
// declares in a "# context: a -> b; c -> d -> e" comment are restored, and
// only where the file's content is exactly the target, so a corpus whose
// links arrived intact is left as it is.
func restoreDeclaredLinks(ctxDir string, expect []byte) error {
	for _, line := range strings.Split(string(expect), "\n") {
		decl, ok := strings.CutPrefix(strings.TrimSpace(line), "# context:")
		if !ok {
			continue
		}
		for _, part := range strings.Split(decl, ";") {
			if i := strings.Index(part, "("); i >= 0 {
				part = part[:i]
			}
			chain := strings.Split(part, "->")
			for i := 0; i+1 < len(chain); i++ {
				link := strings.TrimSpace(chain[i])
				if i > 0 {
					// "a -> b -> c": b lives beside a.
					link = filepath.Join(filepath.Dir(strings.TrimSpace(chain[0])), link)
				}
				target := strings.TrimSpace(chain[i+1])
				p := filepath.Join(ctxDir, link)
				fi, err := os.Lstat(p)
				if err != nil || !fi.Mode().IsRegular() {
					continue
				}
				if b, err := os.ReadFile(p); err != nil || string(b) != target {
					continue
				}
				if err := os.Remove(p); err != nil {
					return err
				}
				if err := os.Symlink(target, p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func mutate(ctxDir string, m Mutation) error {
	p := filepath.Join(ctxDir, m.Path)
	switch m.Op {
	case "write":
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, []byte(m.Text), 0o644)
	case "remove":
		if _, err := os.Lstat(p); err != nil {
			return err
		}
		return os.RemoveAll(p)
	case "rename":
		n := filepath.Join(ctxDir, m.New)
		if err := os.MkdirAll(filepath.Dir(n), 0o755); err != nil {
			return err
		}
		return os.Rename(p, n)
	}
	return fmt.Errorf("unknown mutation %q", m.Op)
}

// progressRe matches the plain progress lines that are not error output:
// step headers, step output, DONE and CACHED.
var progressRe = regexp.MustCompile(`^#\d+ (\[|\d+\.\d+ |\d+\.\d+$|DONE|CACHED)`)

// errorOutput splits a failed build's stderr into its error output (all
// but progress lines) and the lines that may locate the error (also
// without the failing RUN's output tail).
func errorOutput(stderr string) (all, located []string) {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.TrimSpace(l) == "" || progressRe.MatchString(l) {
			continue
		}
		all = append(all, l)
		if !strings.HasPrefix(l, " > ") && strings.Trim(l, "-") != "" {
			located = append(located, l)
		}
	}
	return all, located
}

// checkFailure checks an expected failure; false when the case cannot go on.
func checkFailure(t *testing.T, label string, e *ErrorExpect, r result) bool {
	t.Helper()
	if r.code == 0 {
		t.Errorf("%s: expect:%d: build succeeded, want an error %q", label, e.Line, e.Text)
		return false
	}
	all, located := errorOutput(r.stderr)
	text := strings.Join(all, "\n")
	t.Logf("%s: failed as expected (exit %d): %s", label, r.code, tail(text, 3))
	if e.Text != "" && !strings.Contains(strings.ToLower(text), strings.ToLower(e.Text)) {
		t.Errorf("%s: expect:%d: error output does not mention %q:\n%s", label, e.Line, e.Text, tail(text, 20))
	}
	if e.LineFrom > 0 && !mentionsLine(strings.Join(located, "\n"), e.LineFrom, e.LineTo) {
		t.Errorf("%s: error-line %d-%d: no Dockerfile line in that range in the error:\n%s", label, e.LineFrom, e.LineTo, tail(text, 20))
	}
	return true
}

func mentionsLine(text string, from, to int) bool {
	for n := from; n <= to; n++ {
		s := strconv.Itoa(n)
		re := regexp.MustCompile(`(?i)\bline:? *` + s + `\b|Dockerfile[^\s:]*:` + s + `\b`)
		if re.MatchString(text) {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
