package integration

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildSharedSteps checks that identical steps of parallel stages run
// once, cache mounts persist and stay inside the root whatever their id,
// and --no-cache-filter re-runs only the stage it names and what uses it.
func TestBuildSharedSteps(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	ctx := t.TempDir()
	df := `FROM busybox AS a
RUN --mount=type=cache,target=/c,id=shared-log echo ran >> /c/log && head -c 16 /dev/urandom | od -x > /r

FROM busybox AS b
RUN --mount=type=cache,target=/c,id=shared-log echo ran >> /c/log && head -c 16 /dev/urandom | od -x > /r

FROM busybox
COPY --from=a /r /ra
COPY --from=b /r /rb
RUN --mount=type=cache,target=/c,id=shared-log wc -l < /c/log > /runs
RUN --mount=type=cache,target=/own,id=../../../../etc,uid=1000,gid=1001,mode=0710 stat -c '%u:%g:%a' /own > /own-stat && touch /own/x
`
	writeFiles(t, ctx, map[string]string{"Dockerfile": df})
	buildTo := func(extra ...string) (string, map[string]string) {
		out := filepath.Join(t.TempDir(), "out")
		r := mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, outputs: []string{"type=local,dest=" + out}, extra: extra})
		return out, steps(t, r.stderr)
	}
	out, _ := buildTo()
	if a, b := readFile(t, filepath.Join(out, "ra")), readFile(t, filepath.Join(out, "rb")); a != b {
		t.Errorf("identical RUN steps of stages a and b gave different files:\n%s\n%s", a, b)
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(out, "runs"))); got != "1" {
		t.Errorf("the shared step ran %s times, want 1", got)
	}
	if got := readFile(t, filepath.Join(out, "own-stat")); got != "1000:1001:710\n" {
		t.Errorf("cache mount with uid/gid/mode: stat says %q, want 1000:1001:710", got)
	}
	if _, err := os.Stat(filepath.Join(out, "own")); err == nil {
		t.Errorf("the cache mount point /own was committed into the image")
	}
	entries, err := os.ReadDir(filepath.Join(root, "cache-mounts"))
	if err != nil {
		t.Fatal(err)
	}
	dirs := 0
	for _, e := range entries {
		if e.IsDir() {
			dirs++
			if len(e.Name()) != 64 {
				t.Errorf("cache mount dir %q is not named by a digest", e.Name())
			}
		}
	}
	if dirs != 2 {
		t.Errorf("cache-mounts holds %d dirs, want 2 (shared-log and the traversal id)", dirs)
	}
	if _, err := os.Stat(filepath.Join(root, "..", "etc", "x")); err == nil {
		t.Errorf("id=../../../../etc escaped the root")
	}

	// Only stage b and what depends on it run again.
	out2, st := buildTo("--no-cache-filter", "b")
	want := map[string]string{"Dockerfile:2": "CACHED", "Dockerfile:5": "DONE", "Dockerfile:8": "CACHED", "Dockerfile:9": "DONE", "Dockerfile:10": "DONE"}
	for line, end := range want {
		if st[line] != end {
			t.Errorf("--no-cache-filter b: step %s ended %q, want %s (all: %v)", line, st[line], end, st)
		}
	}
	if readFile(t, filepath.Join(out2, "ra")) != readFile(t, filepath.Join(out, "ra")) {
		t.Errorf("--no-cache-filter b re-ran stage a")
	}
	if readFile(t, filepath.Join(out2, "rb")) == readFile(t, filepath.Join(out, "rb")) {
		t.Errorf("--no-cache-filter b did not re-run stage b")
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(out2, "runs"))); got != "2" {
		t.Errorf("after the re-run of b the cache mount log has %s lines, want 2", got)
	}

	// A plain rebuild still finds the first build's results.
	_, st = buildTo()
	for line, end := range st {
		if end != "CACHED" {
			t.Errorf("rebuild after --no-cache-filter: step %s ended %q, want CACHED", line, end)
		}
	}
}

// TestBuildSecretsSSHAndBinds checks RUN --mount types secret, ssh and
// bind (rw binds of the context, binds of a stage's sub-directory).
func TestBuildSecretsSSHAndBinds(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	ctx := t.TempDir()
	const secret = "s3cret-value-4711"
	// The Dockerfile names only the digest: the value must reach no blob.
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte(secret)))
	df := `FROM busybox AS files
RUN mkdir -p /out/sub && echo from-stage > /out/sub/f

FROM busybox
RUN --mount=type=secret,id=tok,env=TOK --mount=type=secret,id=tok --mount=type=secret,id=tok,target=/tok,mode=0440 test "$(printf %s "$TOK" | sha256sum)" = "` + sum + `  -" && test "$(sha256sum < /run/secrets/tok)" = "` + sum + `  -" && stat -c %a /tok > /tok-mode && echo ok > /secret-ok
RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo ok > /absent-ok
RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK" > /ssh-sock
RUN --mount=type=bind,rw,target=/ctx echo changed > /ctx/file.txt && touch /ctx/new && ls /ctx > /ctx-list
RUN --mount=type=bind,from=files,source=/out/sub,target=/m cat /m/f > /from-stage
`
	writeFiles(t, ctx, map[string]string{"Dockerfile": df, "file.txt": "original\n"})
	secretFile := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	out := filepath.Join(t.TempDir(), "out")
	layout := filepath.Join(t.TempDir(), "layout")
	mustBuild(t, buildOpts{root: root, context: ctx, mirror: true,
		outputs: []string{"type=local,dest=" + out, "type=oci,dest=" + layout},
		extra:   []string{"--secret", "id=tok,src=" + secretFile, "--ssh", "default=" + sock}})
	checks := map[string]string{
		"secret-ok":  "ok\n",
		"tok-mode":   "440\n",
		"absent-ok":  "ok\n",
		"ssh-sock":   "/run/buildkit/ssh_agent.0\n",
		"from-stage": "from-stage\n",
	}
	for f, want := range checks {
		if got := readFile(t, filepath.Join(out, f)); got != want {
			t.Errorf("/%s = %q, want %q", f, got, want)
		}
	}
	if list := readFile(t, filepath.Join(out, "ctx-list")); !strings.Contains(list, "new") {
		t.Errorf("rw bind: the RUN could not create a file (ls: %q)", list)
	}
	if got := readFile(t, filepath.Join(ctx, "file.txt")); got != "original\n" {
		t.Errorf("rw bind changed the context file to %q", got)
	}
	if _, err := os.Stat(filepath.Join(ctx, "new")); err == nil {
		t.Errorf("rw bind created a file in the context")
	}
	for _, p := range []string{"run/secrets", "tok", "ctx", "m", "run/buildkit"} {
		if _, err := os.Lstat(filepath.Join(out, p)); err == nil {
			t.Errorf("mount point /%s was committed into the image", p)
		}
	}
	// The secret is in no blob: not in a layer, the config or the history.
	filepath.Walk(layout, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the secret's value is in %s", p)
		}
		return nil
	})

	// A required secret that is not given fails the step with a clear message.
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nRUN --mount=type=secret,id=need,required=true true\n"})
	r := build(t, buildOpts{root: root, context: ctx, mirror: true})
	if r.code == 0 || !strings.Contains(r.stderr, "Dockerfile:2") || !strings.Contains(r.stderr, "secret need") {
		t.Errorf("missing required secret: want a failure at Dockerfile:2 naming the secret, got\n%s", r)
	}
}

// TestReproducibleBuild builds the same input in two directories and two
// state roots with SOURCE_DATE_EPOCH and expects the same image digest.
func TestReproducibleBuild(t *testing.T) {
	needRoot(t)
	df := `FROM busybox
COPY . /src/
RUN mkdir -p /gen && echo generated > /gen/file && touch /gen/stamp
ENV A=b
`
	var digests []string
	for i := 0; i < 2; i++ {
		ctx := t.TempDir()
		writeFiles(t, ctx, map[string]string{"Dockerfile": df, "a.txt": "a\n", "d/b.txt": "b\n"})
		iid := filepath.Join(t.TempDir(), "iid")
		mustBuild(t, buildOpts{root: t.TempDir(), context: ctx, mirror: true, iidfile: iid,
			env: []string{"SOURCE_DATE_EPOCH=1700000000"}})
		digests = append(digests, readFile(t, iid))
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds with SOURCE_DATE_EPOCH gave %s and %s", digests[0], digests[1])
	}
}

// TestBuildCopyLink checks COPY --link: its layer does not depend on the
// steps before it, so a change below it keeps it cached.
func TestBuildCopyLink(t *testing.T) {
	needRoot(t)
	root, ctx := t.TempDir(), t.TempDir()
	df := "FROM busybox\nARG V\nRUN echo $V > /v && ln -s /nowhere /link-dir\nCOPY --link --chmod=0600 f.txt /w/f.txt\nRUN cat /v /w/f.txt > /both\n"
	writeFiles(t, ctx, map[string]string{"Dockerfile": df, "f.txt": "linked\n"})
	buildTo := func(v string) (string, map[string]string) {
		out := filepath.Join(t.TempDir(), "out")
		r := mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, buildArgs: []string{"V=" + v}, outputs: []string{"type=local,dest=" + out}})
		return out, steps(t, r.stderr)
	}
	buildTo("one")
	out, st := buildTo("two")
	if st["Dockerfile:3"] != "DONE" || st["Dockerfile:4"] != "CACHED" || st["Dockerfile:5"] != "DONE" {
		t.Errorf("after changing the step below COPY --link: steps %v, want RUN DONE, COPY --link CACHED, last RUN DONE", st)
	}
	if got := readFile(t, filepath.Join(out, "both")); got != "two\nlinked\n" {
		t.Errorf("/both = %q", got)
	}
	fi, err := os.Stat(filepath.Join(out, "w/f.txt"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("/w/f.txt: %v %v, want mode 0600", fi, err)
	}
}
