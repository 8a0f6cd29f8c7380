package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// localBuild builds dockerfile (FROM names resolve through the registry
// mirror) in a fresh context and returns the type=local output directory.
func localBuild(t *testing.T, root, dockerfile string, files map[string]string, extra ...string) string {
	t.Helper()
	ctx := t.TempDir()
	files["Dockerfile"] = dockerfile
	writeFiles(t, ctx, files)
	out := filepath.Join(t.TempDir(), "out")
	mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, outputs: []string{"type=local,dest=" + out}, extra: extra})
	return out
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRunSandbox checks the namespaces RUN steps get: a private network
// with --network=none, their own PID namespace, their own hostname.
func TestRunSandbox(t *testing.T) {
	needRoot(t)
	out := localBuild(t, t.TempDir(), `FROM busybox
RUN --network=none cat /proc/net/dev > /netdev-none
RUN cat /proc/net/dev > /netdev-host
RUN echo $$ > /pid && ls /proc > /proc-list && hostname > /hostname-run
RUN sleep 100 & echo $! > /bg-pid
RUN ls /proc > /proc-after-bg
`, map[string]string{})

	ifaces := func(file string) []string {
		var names []string
		for _, l := range strings.Split(readFile(t, file), "\n") {
			if name, _, ok := strings.Cut(l, ":"); ok && !strings.Contains(name, "|") {
				names = append(names, strings.TrimSpace(name))
			}
		}
		return names
	}
	if got := ifaces(filepath.Join(out, "netdev-none")); len(got) != 1 || got[0] != "lo" {
		t.Errorf("RUN --network=none sees interfaces %q, want only lo", got)
	}
	got, want := ifaces(filepath.Join(out, "netdev-host")), ifaces("/proc/self/net/dev")
	if strings.Join(sortedCopy(got), " ") != strings.Join(sortedCopy(want), " ") {
		t.Errorf("RUN (default network: host) sees interfaces %q, the host has %q", got, want)
	}

	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(out, "pid"))))
	if err != nil || pid < 1 || pid > 10 {
		t.Errorf("RUN's shell has pid %q, want a small pid of a fresh PID namespace", readFile(t, filepath.Join(out, "pid")))
	}
	pidsIn := func(file string) []int {
		var pids []int
		for _, name := range strings.Fields(readFile(t, filepath.Join(out, file))) {
			if n, err := strconv.Atoi(name); err == nil {
				pids = append(pids, n)
			}
		}
		return pids
	}
	if p := pidsIn("proc-list"); len(p) == 0 || len(p) > 5 {
		t.Errorf("RUN sees pids %v in /proc, want only the few of its own namespace", p)
	}
	// A background process of one RUN dies with it: the next RUN's fresh
	// namespace does not show it, and no such process is left on the host.
	if p := pidsIn("proc-after-bg"); len(p) > 5 {
		t.Errorf("the RUN after a backgrounded sleep sees pids %v", p)
	}
	host, _ := os.Hostname()
	if got := strings.TrimSpace(readFile(t, filepath.Join(out, "hostname-run"))); got == "" || got == host {
		t.Errorf("RUN hostname %q, want its own (host is %q)", got, host)
	}
	for _, name := range []string{"etc/hostname", "etc/hosts", "etc/resolv.conf"} {
		if _, err := os.Lstat(filepath.Join(out, name)); err == nil {
			t.Errorf("the RUN sandbox's /%s ended up in the image", name)
		}
	}
	left := procs(func(pid int, _ string, _ []byte) bool { return cmdline(pid) == "sleep 100" })
	if len(left) > 0 {
		t.Errorf("the backgrounded `sleep 100` outlived its RUN step: pids %v", left)
	}
}

// TestLocalStoreFrom checks that images of the local store (import, tag)
// are found by FROM before any registry, and that `images` lists them.
func TestLocalStoreFrom(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	rootfs := t.TempDir()
	writeFiles(t, rootfs, map[string]string{"hello.txt": "from import\n"})
	bb := readFile(t, "/bin/busybox")
	if err := os.WriteFile(filepath.Join(rootfs, "busybox"), []byte(bb), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := runStrata(t, root, "import", "-t", "localonly/base:v1", "-c", `CMD ["/busybox","sh"]`, rootfs); r.code != 0 {
		t.Fatalf("import: %s", r)
	}
	if r := runStrata(t, root, "tag", "localonly/base:v1", "localonly/other:v2"); r.code != 0 {
		t.Fatalf("tag: %s", r)
	}
	r := runStrata(t, root, "images")
	if r.code != 0 || !strings.Contains(r.stdout, "localonly/base:v1") || !strings.Contains(r.stdout, "localonly/other:v2") {
		t.Errorf("images does not list both tags: %s", r)
	}
	out := localBuild(t, root, `FROM localonly/other:v2
RUN ["/busybox", "sh", "-c", "/busybox cat /hello.txt > /copy.txt"]
`, map[string]string{})
	if got := readFile(t, filepath.Join(out, "copy.txt")); got != "from import\n" {
		t.Errorf("RUN on the imported base wrote %q", got)
	}
}

// TestProgressJSONAndJobs builds independent stages with --jobs 1 and
// --progress=json: every stderr line is an event and every step ends.
func TestProgressJSONAndJobs(t *testing.T) {
	needRoot(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `FROM busybox AS a
RUN echo a > /a
FROM busybox AS b
RUN echo b > /b
FROM scratch
COPY --from=a /a /a
COPY --from=b /b /b
`})
	out := filepath.Join(t.TempDir(), "out")
	o := buildOpts{root: t.TempDir(), context: ctx, mirror: true, outputs: []string{"type=local,dest=" + out},
		extra: []string{"--jobs", "1"}}
	args := o.args()
	for i, a := range args {
		if a == "--progress=plain" {
			args[i] = "--progress=json"
		}
	}
	r := runStrata(t, o.root, args...)
	if r.code != 0 {
		t.Fatalf("build failed: %s", r)
	}
	started, ended := map[int]bool{}, map[int]bool{}
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var ev struct {
			Type string
			ID   int
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Errorf("--progress=json line is not JSON: %q", l)
			continue
		}
		switch ev.Type {
		case "start":
			started[ev.ID] = true
		case "done":
			ended[ev.ID] = true
		}
	}
	if len(started) < 4 {
		t.Errorf("%d steps started, want at least 4 (2 RUN, 2 COPY)", len(started))
	}
	for id := range started {
		if !ended[id] {
			t.Errorf("step %d started but never ended", id)
		}
	}
	for name, want := range map[string]string{"a": "a\n", "b": "b\n"} {
		if got := readFile(t, filepath.Join(out, name)); got != want {
			t.Errorf("/%s = %q, want %q", name, got, want)
		}
	}
}
