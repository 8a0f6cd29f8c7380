package integration

import (
	"path/filepath"
	"strings"
	"testing"
)

// duCount returns the COUNT column of a `strata du` category row.
func duCount(t *testing.T, out, category string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, category+" ") {
			f := strings.Fields(strings.TrimPrefix(l, category))
			if len(f) > 0 {
				return f[0]
			}
		}
	}
	t.Fatalf("no %q row in du output:\n%s", category, out)
	return ""
}

// TestPruneAndDu checks prune and du on a real state root: prune --all
// empties the build cache but keeps tagged images, a plain prune after a
// build keeps what the cache uses, and a later build still works.
func TestPruneAndDu(t *testing.T) {
	needRoot(t)
	root, ctx := t.TempDir(), t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nCOPY f /f\nRUN echo built > /built\n", "f": "f\n"})
	mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, tags: []string{"local/pruned:1"}})

	out, errOut, code := strata(t, root, "du")
	if code != 0 {
		t.Fatalf("du failed: %s", errOut)
	}
	if duCount(t, out, "build cache") == "0" {
		t.Errorf("du after a build shows an empty build cache:\n%s", out)
	}

	// A plain prune removes only dangling things: the rebuild stays cached.
	if _, errOut, code := strata(t, root, "prune", "-f"); code != 0 {
		t.Fatalf("prune failed: %s", errOut)
	}
	r := mustBuild(t, buildOpts{root: root, context: ctx, mirror: true})
	for line, end := range steps(t, r.stderr) {
		if end != "CACHED" {
			t.Errorf("after a plain prune, step %s ended %q, want CACHED", line, end)
		}
	}

	if _, errOut, code := strata(t, root, "prune", "--all", "-f"); code != 0 {
		t.Fatalf("prune --all failed: %s", errOut)
	}
	out, _, _ = strata(t, root, "du")
	if got := duCount(t, out, "build cache"); got != "0" {
		t.Errorf("du after prune --all: build cache count %s, want 0\n%s", got, out)
	}
	imgs, _, _ := strata(t, root, "images")
	if !strings.Contains(imgs, "local/pruned:1") {
		t.Errorf("prune --all removed the tagged image:\n%s", imgs)
	}
	// The tagged image is still whole: it can be written out.
	dest := filepath.Join(t.TempDir(), "layout")
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM local/pruned:1\nRUN cat /built > /again\n"})
	out2 := filepath.Join(t.TempDir(), "out")
	mustBuild(t, buildOpts{root: root, context: ctx, outputs: []string{"type=local,dest=" + out2, "type=oci,dest=" + dest}})
	if got := readFile(t, filepath.Join(out2, "again")); got != "built\n" {
		t.Errorf("build on the kept image after prune --all: /again = %q", got)
	}
}

// TestPruneKeepsContainerLayers checks that prune --all leaves the layers
// a container runs on.
func TestPruneKeepsContainerLayers(t *testing.T) {
	needRoot(t)
	e := newRunEnv(t)
	id := strings.TrimSpace(e.must(t, "run", "-d", "--name", "keeper", e.image, "sleep", "60"))
	defer e.strata(t, "rm", "-f", id)
	if r := e.strata(t, "rmi", e.image); r.code != 0 {
		t.Fatalf("rmi: %s", r)
	}
	if r := e.strata(t, "prune", "--all", "-f"); r.code != 0 {
		t.Fatalf("prune --all: %s", r)
	}
	if got := e.must(t, "exec", id, "cat", "/etc/passwd"); !strings.Contains(got, "root:") {
		t.Errorf("after prune --all, the running container's image files are gone: %q", got)
	}
}
