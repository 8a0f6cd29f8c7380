package integration

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fileServer serves one file with an ETag and Last-Modified and counts the
// bodies it sent and the 304s it answered.
type fileServer struct {
	mu          sync.Mutex
	body, etag  string
	modified    time.Time
	bodies, not int
}

func (f *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/dl/payload.txt" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("If-None-Match") == f.etag {
		f.not++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	f.bodies++
	w.Header().Set("ETag", f.etag)
	w.Header().Set("Last-Modified", f.modified.UTC().Format(http.TimeFormat))
	fmt.Fprint(w, f.body)
}

func (f *fileServer) set(body, etag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.body, f.etag = body, etag
}

func (f *fileServer) counts() (bodies, notModified int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies, f.not
}

// serve starts h on a free 127.0.0.1 port for the test's lifetime.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// TestBuildAddURL checks ADD of an HTTP URL: mode 0600 and mtime from
// Last-Modified, a rebuild that asks with If-None-Match and stays cached on
// 304, a changed file re-running the step, and --checksum.
func TestBuildAddURL(t *testing.T) {
	needRoot(t)
	fs := &fileServer{modified: time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)}
	fs.set("first payload\n", `"v1"`)
	addr := serve(t, fs)
	root, ctx := t.TempDir(), t.TempDir()
	url := "http://" + addr + "/dl/payload.txt"
	df := "FROM busybox\nADD " + url + " /dl/\nRUN stat -c '%a %Y' /dl/payload.txt > /stat\n"
	writeFiles(t, ctx, map[string]string{"Dockerfile": df})
	buildTo := func() (string, map[string]string) {
		out := filepath.Join(t.TempDir(), "out")
		r := mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, outputs: []string{"type=local,dest=" + out}})
		return out, steps(t, r.stderr)
	}
	out, _ := buildTo()
	if got := readFile(t, filepath.Join(out, "dl/payload.txt")); got != "first payload\n" {
		t.Errorf("ADD URL gave %q", got)
	}
	if got, want := readFile(t, filepath.Join(out, "stat")), fmt.Sprintf("600 %d\n", fs.modified.Unix()); got != want {
		t.Errorf("ADD URL file mode and mtime: %q, want %q", got, want)
	}
	_, st := buildTo()
	if st["Dockerfile:2"] != "CACHED" || st["Dockerfile:3"] != "CACHED" {
		t.Errorf("rebuild with the URL unchanged: steps %v, want ADD and RUN CACHED", st)
	}
	if bodies, not := fs.counts(); bodies != 1 || not != 1 {
		t.Errorf("server sent %d bodies and %d 304s, want 1 and 1", bodies, not)
	}
	fs.set("second payload\n", `"v2"`)
	out, st = buildTo()
	if st["Dockerfile:2"] != "DONE" || readFile(t, filepath.Join(out, "dl/payload.txt")) != "second payload\n" {
		t.Errorf("after the remote file changed: steps %v, content %q", st, readFile(t, filepath.Join(out, "dl/payload.txt")))
	}

	sum := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("second payload\n")))
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nADD --checksum=" + sum + " " + url + " /ok.txt\n"})
	mustBuild(t, buildOpts{root: root, context: ctx, mirror: true})
	bad := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("other")))
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nADD --checksum=" + bad + " " + url + " /bad.txt\n"})
	r := build(t, buildOpts{root: root, context: ctx, mirror: true})
	if r.code == 0 || !strings.Contains(r.stderr, "Dockerfile:2") || !strings.Contains(r.stderr, "checksum") {
		t.Errorf("ADD with a wrong --checksum: want a failure at Dockerfile:2 about the checksum, got\n%s", r)
	}
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nADD http://" + addr + "/missing /m\n"})
	r = build(t, buildOpts{root: root, context: ctx, mirror: true})
	if r.code == 0 || !strings.Contains(r.stderr, "404") {
		t.Errorf("ADD of a missing URL: want a failure naming 404, got\n%s", r)
	}
}

// TestBuildAddGit checks ADD of a git repository served over smart HTTP by
// git-http-backend: by branch, tag and subdir, with --keep-git-dir, and a
// rebuild that stays cached while the branch does not move.
func TestBuildAddGit(t *testing.T) {
	needRoot(t)
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("git-http-backend is needed (package git): %v", err)
	}
	srvRoot := t.TempDir()
	repo := filepath.Join(srvRoot, "repo.git")
	work := t.TempDir()
	git := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+work, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_COMMITTER_DATE=2022-01-02T03:04:05Z", "GIT_AUTHOR_DATE=2022-01-02T03:04:05Z")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	src := filepath.Join(work, "src")
	writeFiles(t, src, map[string]string{"README": "v1\n", "sub/inner.txt": "inner\n"})
	git(src, "init", "-q", "-b", "main")
	git(src, "add", ".")
	git(src, "commit", "-q", "-m", "one")
	git(src, "tag", "v1")
	git(srvRoot, "clone", "-q", "--bare", src, repo)

	h := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + srvRoot, "GIT_HTTP_EXPORT_ALL=1"}}
	addr := serve(t, h)
	base := "http://" + addr + "/repo.git"

	root, ctx := t.TempDir(), t.TempDir()
	df := "FROM busybox\n" +
		"ADD " + base + "#main /main/\n" +
		"ADD " + base + "#v1:sub /sub/\n" +
		"ADD --keep-git-dir=true " + base + "#main /kept/\n"
	writeFiles(t, ctx, map[string]string{"Dockerfile": df})
	out := filepath.Join(t.TempDir(), "out")
	mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, outputs: []string{"type=local,dest=" + out}})
	for f, want := range map[string]string{"main/README": "v1\n", "main/sub/inner.txt": "inner\n", "sub/inner.txt": "inner\n", "kept/README": "v1\n"} {
		if got := readFile(t, filepath.Join(out, f)); got != want {
			t.Errorf("/%s = %q, want %q", f, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "main/.git")); err == nil {
		t.Errorf("ADD without --keep-git-dir kept .git")
	}
	if _, err := os.Stat(filepath.Join(out, "kept/.git")); err != nil {
		t.Errorf("ADD --keep-git-dir=true: no .git: %v", err)
	}

	r := mustBuild(t, buildOpts{root: root, context: ctx, mirror: true})
	for line, end := range steps(t, r.stderr) {
		if end != "CACHED" {
			t.Errorf("rebuild with the repository unchanged: step %s ended %q", line, end)
		}
	}

	// Moving the branch re-runs the step that reads it.
	writeFiles(t, src, map[string]string{"README": "v2\n"})
	git(src, "commit", "-q", "-am", "two")
	git(src, "push", "-q", repo, "main")
	out = filepath.Join(t.TempDir(), "out")
	r = mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, outputs: []string{"type=local,dest=" + out}})
	st := steps(t, r.stderr)
	if st["Dockerfile:2"] != "DONE" {
		t.Errorf("after a new commit on main: ADD #main ended %q, want DONE", st["Dockerfile:2"])
	}
	if got := readFile(t, filepath.Join(out, "main/README")); got != "v2\n" {
		t.Errorf("after a new commit on main: /main/README = %q", got)
	}
}
