package integration

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestBuildOutputs builds one image to each --output type, each time with
// --iidfile, and reads every output back. Image outputs (oci, docker)
// report the compressed image's digest; filesystem outputs (local, tar)
// compress nothing and report the local image's, as a plain build does.
func TestBuildOutputs(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{
		"Dockerfile": "FROM busybox\nRUN echo built > /built.txt\nCOPY hello.txt /hello.txt\n",
		"hello.txt":  "hello\n",
	})
	const tag = "outputs-test"
	out := t.TempDir()
	rootfsFiles := map[string]string{"built.txt": "built\n", "hello.txt": "hello\n", "etc/group": "root:x:0:\nnogroup:x:65534:\n"}
	tests := []struct {
		typ, dest string
		image     bool
		check     func(t *testing.T, dest, iid string)
	}{
		{"oci", filepath.Join(out, "oci"), true, func(t *testing.T, dest, iid string) {
			img := readLayout(t, dest, tag)
			validateLayout(t, dest)
			if img.digest != iid {
				t.Errorf("OCI layout has manifest %s, --iidfile %s", img.digest, iid)
			}
			if n := len(img.manifest.Layers); n != 3 {
				t.Errorf("%d layers, want 3 (busybox, RUN, COPY)", n)
			}
			rootfs := umociUnpack(t, dest, img.tag)
			for name, want := range map[string]string{"built.txt": "built\n", "hello.txt": "hello\n"} {
				if got := readFile(t, filepath.Join(rootfs, name)); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		}},
		{"docker", filepath.Join(out, "image.tar"), true, func(t *testing.T, dest, iid string) {
			checkDockerArchive(t, dest, tag, 3)
		}},
		{"local", filepath.Join(out, "local"), false, func(t *testing.T, dest, iid string) {
			for name, want := range rootfsFiles {
				if got := readFile(t, filepath.Join(dest, name)); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if l, err := os.Readlink(filepath.Join(dest, "bin/sh")); err != nil || l != "busybox" {
				t.Errorf("bin/sh: %q %v, want a symlink to busybox", l, err)
			}
			for _, junk := range []string{"index.json", "manifest.json", "oci-layout"} {
				if _, err := os.Lstat(filepath.Join(dest, junk)); err == nil {
					t.Errorf("type=local output has %s: not a plain rootfs", junk)
				}
			}
		}},
		{"tar", filepath.Join(out, "rootfs.tar"), false, func(t *testing.T, dest, iid string) {
			got := tarFiles(t, dest)
			for name, want := range rootfsFiles {
				if got[name] != want {
					t.Errorf("%s in the tar = %q, want %q", name, got[name], want)
				}
			}
			if got["bin/sh"] != "->busybox" {
				t.Errorf("bin/sh in the tar = %q, want a symlink to busybox", got["bin/sh"])
			}
			if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".strata-*")); len(leftovers) > 0 {
				t.Errorf("scratch files left beside the tar: %v", leftovers)
			}
		}},
	}
	plainIID := filepath.Join(t.TempDir(), "iid")
	mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, iidfile: plainIID})
	plain := strings.TrimSpace(readFile(t, plainIID))
	var digests []string
	for _, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			iidfile := filepath.Join(t.TempDir(), "iid")
			mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, tags: []string{tag}, iidfile: iidfile,
				outputs: []string{"type=" + tc.typ + ",dest=" + tc.dest}})
			iid := strings.TrimSpace(readFile(t, iidfile))
			if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(iid) {
				t.Fatalf("--iidfile has %q", iid)
			}
			if tc.image {
				digests = append(digests, iid)
			} else if iid != plain {
				t.Errorf("type=%s reports %s, a build without outputs %s: want the local image", tc.typ, iid, plain)
			}
			tc.check(t, tc.dest, iid)
		})
	}
	if len(slices.Compact(slices.Clone(digests))) != 1 || digests[0] == plain {
		t.Errorf("image outputs of the same (cached) build gave digests %q (local image %s): want one, the compressed image's", digests, plain)
	}
}

// checkDockerArchive checks a `docker load` tarball: manifest.json names
// the tag and layers files that the archive holds.
func checkDockerArchive(t *testing.T, file, tag string, layers int) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[normEntry(h.Name)] = b
	}
	var m []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 {
		t.Fatalf("manifest.json %q: %v", files["manifest.json"], err)
	}
	tagged := false
	for _, rt := range m[0].RepoTags {
		tagged = tagged || rt == tag || rt == tag+":latest" || strings.HasSuffix(rt, "/"+tag+":latest")
	}
	if !tagged {
		t.Errorf("RepoTags %q do not name %q", m[0].RepoTags, tag)
	}
	if len(m[0].Layers) != layers {
		t.Errorf("%d layers, want %d", len(m[0].Layers), layers)
	}
	for _, name := range append([]string{m[0].Config}, m[0].Layers...) {
		if _, ok := files[normEntry(name)]; !ok {
			t.Errorf("manifest.json names %q, not in the archive", name)
		}
	}
}

// stepRe reads a plain progress step header.
var stepRe = regexp.MustCompile(`^#(\d+) \[[^\]]*\] (.*) \(([^()]*):(\d+)\)$`)

// steps maps each step, by its Dockerfile line ("Dockerfile:3"), to how it
// ended (CACHED, DONE, ERROR; "started" when it did not end).
func steps(t *testing.T, stderr string) map[string]string {
	t.Helper()
	names := map[string]string{}
	out := map[string]string{}
	for _, l := range strings.Split(stderr, "\n") {
		if m := stepRe.FindStringSubmatch(l); m != nil {
			key := filepath.Base(m[3]) + ":" + m[4]
			names[m[1]] = key
			out[key] = "started"
			continue
		}
		for _, end := range []string{"CACHED", "DONE", "ERROR"} {
			if id, _, ok := strings.Cut(l, " "+end); ok && names[strings.TrimPrefix(id, "#")] != "" {
				out[names[strings.TrimPrefix(id, "#")]] = end
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no steps in the progress output:\n%s", stderr)
	}
	return out
}

// TestBuildCache checks the step cache: an identical rebuild is all
// CACHED with the same digest; a changed COPY source re-runs that step and
// the ones after it only.
func TestBuildCache(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	ctx := t.TempDir()
	df := "FROM busybox\n" +
		"RUN head -c 32 /dev/urandom | sha256sum > /before\n" +
		"COPY src.txt /src.txt\n" +
		"RUN head -c 32 /dev/urandom | sha256sum > /after\n"
	writeFiles(t, ctx, map[string]string{"Dockerfile": df, "src.txt": "one\n"})
	type built struct {
		steps   map[string]string
		iid     string
		outDir  string
		content map[string]string
	}
	buildOnce := func() built {
		dir := t.TempDir()
		r := mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, iidfile: filepath.Join(dir, "iid"),
			outputs: []string{"type=local,dest=" + filepath.Join(dir, "out")}})
		b := built{steps: steps(t, r.stderr), iid: readFile(t, filepath.Join(dir, "iid")), content: map[string]string{}}
		for _, f := range []string{"before", "after", "src.txt"} {
			b.content[f] = readFile(t, filepath.Join(dir, "out", f))
		}
		return b
	}
	const run1, cp, run2 = "Dockerfile:2", "Dockerfile:3", "Dockerfile:4"
	first := buildOnce()
	for _, s := range []string{run1, cp, run2} {
		if first.steps[s] != "DONE" {
			t.Errorf("cold build: step %q ended %q, want DONE (steps %v)", s, first.steps[s], first.steps)
		}
	}
	second := buildOnce()
	for _, s := range []string{run1, cp, run2} {
		if second.steps[s] != "CACHED" {
			t.Errorf("identical rebuild: step %s ended %q, want CACHED", s, second.steps[s])
		}
	}
	for s, end := range second.steps {
		if end != "CACHED" && s != "Dockerfile:1" {
			t.Errorf("identical rebuild: step %q ended %q, want CACHED", s, end)
		}
	}
	if second.iid != first.iid {
		t.Errorf("identical rebuild: digest %s, first build %s", second.iid, first.iid)
	}
	if second.content["after"] != first.content["after"] {
		t.Errorf("identical rebuild re-ran the last RUN")
	}

	writeFiles(t, ctx, map[string]string{"src.txt": "two\n"})
	third := buildOnce()
	want := map[string]string{run1: "CACHED", cp: "DONE", run2: "DONE"}
	for s, end := range want {
		if third.steps[s] != end {
			t.Errorf("after changing src.txt: step %q ended %q, want %s", s, third.steps[s], end)
		}
	}
	if third.content["before"] != first.content["before"] || third.content["after"] == first.content["after"] {
		t.Errorf("after changing src.txt: /before %q (was %q), /after %q (was %q): want before kept, after re-run",
			third.content["before"], first.content["before"], third.content["after"], first.content["after"])
	}
	if third.content["src.txt"] != "two\n" || third.iid == first.iid {
		t.Errorf("after changing src.txt: /src.txt %q, digest %s (first %s)", third.content["src.txt"], third.iid, first.iid)
	}
}

// tarFiles reads a tar file: regular files by content, symlinks as
// "->TARGET", directories as "/".
func tarFiles(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading %s: %v", file, err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		switch h.Typeflag {
		case tar.TypeSymlink:
			out[name] = "->" + h.Linkname
		case tar.TypeDir:
			out[name] = "/"
		default:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = string(b)
		}
	}
}
