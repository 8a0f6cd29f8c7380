package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runDockerfile is the image the strata run tests use: busybox with a web
// root, an ENV, and content at a path volumes are mounted on.
const runDockerfile = `FROM busybox
RUN mkdir -p /www /seed && echo hello-from-image > /www/index.html && echo seeded > /seed/file
ENV FROMIMAGE=yes OVERRIDE=image
`

// runEnv is one state root holding the test image.
type runEnv struct {
	root, image string
}

// newRunEnv builds the test image with strata build -t into a fresh root
// and removes every container left in it when the test ends.
func newRunEnv(t *testing.T) *runEnv {
	t.Helper()
	needRoot(t)
	e := &runEnv{root: t.TempDir(), image: "strata-run-test:latest"}
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": runDockerfile})
	mustBuild(t, buildOpts{root: e.root, context: ctx, mirror: true, tags: []string{e.image}})
	t.Cleanup(func() {
		r := runStrata(t, e.root, "ps", "-aq", "--no-trunc")
		for _, id := range strings.Fields(r.stdout) {
			runStrata(t, e.root, "rm", "-f", "-v", id)
		}
	})
	return e
}

func (e *runEnv) strata(t *testing.T, args ...string) result {
	t.Helper()
	return runStrata(t, e.root, args...)
}

// must runs strata and fails the test unless it exits 0; it returns stdout.
func (e *runEnv) must(t *testing.T, args ...string) string {
	t.Helper()
	r := e.strata(t, args...)
	if r.code != 0 {
		t.Fatalf("strata %s:\n%s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// sh runs a shell script in a new --rm container with extra run flags.
func (e *runEnv) sh(t *testing.T, flags []string, script string) result {
	t.Helper()
	args := append(append([]string{"run", "--rm"}, flags...), e.image, "sh", "-c", script)
	return e.strata(t, args...)
}

// containerIDs lists the IDs of every container of the root.
func (e *runEnv) containerIDs(t *testing.T) []string {
	t.Helper()
	return strings.Fields(e.must(t, "ps", "-aq", "--no-trunc"))
}

// checkHostClean fails when a mount mentioning the root appeared, or a
// container directory, cgroup or monitor process is left.
func (e *runEnv) checkHostClean(t *testing.T, before mountSnapshot) {
	t.Helper()
	if m := before.newMounts(t, e.root); len(m) > 0 {
		t.Errorf("mounts left on the host: %v", m)
	}
	if ids := e.containerIDs(t); len(ids) > 0 {
		t.Errorf("containers left: %v", ids)
	}
	ents, _ := os.ReadDir(filepath.Join(e.root, "containers"))
	for _, en := range ents {
		if en.Name() != ".lock" {
			t.Errorf("left in ROOT/containers: %s", en.Name())
		}
	}
	// A monitor holds the container's log open.
	left := procs(func(pid int, _ string, _ []byte) bool {
		fds, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name())); strings.HasPrefix(l, e.root+"/") {
				return true
			}
		}
		return false
	})
	for _, pid := range left {
		t.Errorf("process left holding files of the root: %d %s", pid, cmdline(pid))
	}
}

// TestRunIsolation checks what a container sees: itself as PID 1 and no
// host process, its own hostname and /etc files, only its own
// interfaces, Docker's capabilities with no_new_privs, masked /proc
// paths, and none of the host's mounts.
func TestRunIsolation(t *testing.T) {
	e := newRunEnv(t)
	before := mounts(t)
	r := e.sh(t, nil, `echo pid=$$; ls /proc | grep -c '^[0-9]'; hostname; cat /etc/hostname;
grep -c "$(hostname)" /etc/hosts; ls /sys/class/net | tr '\n' ' '; echo;
grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status; test -s /proc/kcore || echo kcore-masked;
cut -d' ' -f5 /proc/self/mountinfo | sort | tr '\n' ' '`)
	if r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 10 {
		t.Fatalf("unexpected output:\n%s", r)
	}
	if lines[0] != "pid=1" {
		t.Errorf("the command runs as %s, want pid=1", lines[0])
	}
	if n, _ := strconv.Atoi(lines[1]); n < 1 || n > 3 {
		t.Errorf("the container sees %s processes, want only its own (sh, ls, grep)", lines[1])
	}
	host, _ := os.Hostname()
	if lines[2] == host || len(lines[2]) != 12 || lines[3] != lines[2] {
		t.Errorf("hostname %q, /etc/hostname %q: want the container ID's first 12 digits, not the host's %q", lines[2], lines[3], host)
	}
	if lines[4] != "1" {
		t.Errorf("/etc/hosts names the container's hostname %s times, want 1", lines[4])
	}
	if lines[5] != "eth0 lo " {
		t.Errorf("interfaces %q, want eth0 and lo (bridge network)", lines[5])
	}
	if lines[6] != "CapBnd:\t00000000a80425fb" || lines[7] != "NoNewPrivs:\t1" {
		t.Errorf("capabilities %q %q: want Docker's default set and no_new_privs", lines[6], lines[7])
	}
	if lines[8] != "kcore-masked" {
		t.Errorf("/proc/kcore is not masked: %q", lines[8])
	}
	if strings.Contains(lines[9], e.root) || strings.Contains(lines[9], "/var/tmp") || !strings.Contains(lines[9], "/proc") {
		t.Errorf("the container's mount table shows host mounts: %s", lines[9])
	}

	r = e.sh(t, []string{"--hostname", "box", "--network", "none"}, `hostname; ls /sys/class/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '`)
	if r.code != 0 || r.stdout != "box\nlo\nlo\n" {
		t.Errorf("--hostname box --network none: want hostname box and only lo:\n%s", r)
	}
	r = e.sh(t, []string{"--network", "host"}, `ls /sys/class/net | wc -l`)
	hostIfaces, _ := os.ReadDir("/sys/class/net")
	if r.code != 0 || strings.TrimSpace(r.stdout) != strconv.Itoa(len(hostIfaces)) {
		t.Errorf("--network host sees %q interfaces, the host has %d:\n%s", strings.TrimSpace(r.stdout), len(hostIfaces), r)
	}
	r = e.sh(t, []string{"--init"}, `test $$ -ne 1 && cat /proc/1/cmdline | tr '\0' ' '`)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "strata-init") {
		t.Errorf("--init: want strata's init as PID 1 and the command beside it:\n%s", r)
	}
	e.checkHostClean(t, before)
}

func TestRunExitCodes(t *testing.T) {
	e := newRunEnv(t)
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"success", []string{"true"}, 0},
		{"status", []string{"sh", "-c", "exit 42"}, 42},
		// Not the last command: busybox sh would exec it as PID 1, which
		// cannot be killed from inside.
		{"killed child", []string{"sh", "-c", `sh -c 'kill -9 $$'; exit $?`}, 137},
		{"not found", []string{"no-such-command"}, 127},
		{"not executable", []string{"/etc/passwd"}, 126},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.strata(t, append([]string{"run", "--rm", e.image}, tc.args...)...)
			if r.code != tc.want {
				t.Errorf("exit %d, want %d:\n%s", r.code, tc.want, r)
			}
		})
	}
	if r := e.strata(t, "run", "--rm", "no-such/image:here"); r.code == 0 {
		t.Errorf("running a missing image succeeded:\n%s", r)
	}
}

func TestRunEnvironment(t *testing.T) {
	e := newRunEnv(t)
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# comment\nFROMFILE=file value\n\nOVERRIDE=file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runStrataEnv(t, e.root, []string{"STRATA_TEST_PASSED=from-host"}, "run", "--rm",
		"--env-file", envFile, "-e", "A=1", "-e", "OVERRIDE=flag", "-e", "STRATA_TEST_PASSED", "-w", "/www", "-u", "nobody",
		e.image, "sh", "-c", `echo "$A|$FROMIMAGE|$OVERRIDE|$FROMFILE|$STRATA_TEST_PASSED|$(pwd)|$(id -u)|$HOSTNAME"`)
	if r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	f := strings.Split(strings.TrimSpace(r.stdout), "|")
	want := []string{"1", "yes", "flag", "file value", "from-host", "/www", "65534"}
	if len(f) != 8 || strings.Join(f[:7], "|") != strings.Join(want, "|") || len(f[7]) != 12 {
		t.Errorf("environment %q, want %q and a 12-digit HOSTNAME", f, want)
	}
	if r := e.strata(t, "run", "--rm", "--entrypoint", "echo", e.image, "via", "entrypoint"); r.code != 0 || r.stdout != "via entrypoint\n" {
		t.Errorf("--entrypoint echo: %s", r)
	}
}

// TestRunWritableLayer checks that a container's writes stay in it and
// go when it is removed.
func TestRunWritableLayer(t *testing.T) {
	e := newRunEnv(t)
	before := mounts(t)
	e.must(t, "run", "--name", "writer", e.image, "sh", "-c", "echo data > /written && rm /www/index.html")
	if r := e.sh(t, nil, "test -e /written || echo absent; cat /www/index.html"); r.stdout != "absent\nhello-from-image\n" {
		t.Errorf("another container sees the first one's writes:\n%s", r)
	}
	if r := e.strata(t, "run", "--name", "writer", e.image, "true"); r.code == 0 {
		t.Errorf("a second container named writer was created:\n%s", r)
	}
	st := e.must(t, "container", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.Dir}}", "writer")
	var status, dir string
	var code int
	if _, err := fmt.Sscan(st, &status, &code, &dir); err != nil || status != "exited" || code != 0 {
		t.Fatalf("inspect: %q (%v)", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "rw", "fs", "written")); err != nil || string(b) != "data\n" {
		t.Errorf("the write is not in the container's layer: %q %v", b, err)
	}
	e.must(t, "rm", "writer")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the container's directory is left after rm: %v", err)
	}
	if r := e.strata(t, "rm", "writer"); r.code == 0 {
		t.Errorf("removing a removed container succeeded:\n%s", r)
	}
	e.checkHostClean(t, before)
}

func TestRunBindMountsAndVolumes(t *testing.T) {
	e := newRunEnv(t)
	before := mounts(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "in"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.sh(t, []string{"-v", host + ":/data"}, "cat /data/in; echo from container > /data/out")
	if r.code != 0 || r.stdout != "from host\n" {
		t.Errorf("bind mount: %s", r)
	}
	if b, err := os.ReadFile(filepath.Join(host, "out")); err != nil || string(b) != "from container\n" {
		t.Errorf("the container's write through the bind mount: %q %v", b, err)
	}
	r = e.sh(t, []string{"-v", host + ":/data:ro"}, "echo x > /data/ro 2>/dev/null || echo refused; cat /data/in")
	if r.code != 0 || r.stdout != "refused\nfrom host\n" {
		t.Errorf("read-only bind mount: %s", r)
	}
	if _, err := os.Stat(filepath.Join(host, "ro")); err == nil {
		t.Error("a read-only bind mount was written")
	}

	// A named volume is made on first use, filled from the image's
	// content at its path, and keeps what containers write.
	r = e.sh(t, []string{"-v", "seedvol:/seed"}, "cat /seed/file; echo kept > /seed/new")
	if r.code != 0 || r.stdout != "seeded\n" {
		t.Errorf("new named volume not initialised from the image: %s", r)
	}
	r = e.sh(t, []string{"-v", "seedvol:/elsewhere"}, "cat /elsewhere/file /elsewhere/new")
	if r.code != 0 || r.stdout != "seeded\nkept\n" {
		t.Errorf("named volume did not persist: %s", r)
	}
	if out := e.must(t, "volume", "ls", "-q"); out != "seedvol\n" {
		t.Errorf("volume ls: %q", out)
	}
	var vols []struct {
		Name       string `json:"name"`
		Mountpoint string `json:"mountpoint"`
	}
	if err := json.Unmarshal([]byte(e.must(t, "volume", "inspect", "seedvol")), &vols); err != nil || len(vols) != 1 {
		t.Fatalf("volume inspect: %v %v", vols, err)
	}
	if b, err := os.ReadFile(filepath.Join(vols[0].Mountpoint, "new")); err != nil || string(b) != "kept\n" {
		t.Errorf("volume content on the host: %q %v", b, err)
	}
	e.must(t, "run", "--name", "user", "-v", "seedvol:/v", e.image, "true")
	if r := e.strata(t, "volume", "rm", "seedvol"); r.code == 0 {
		t.Errorf("a volume a container uses was removed:\n%s", r)
	}
	e.must(t, "rm", "user")
	e.must(t, "volume", "rm", "seedvol")
	if out := e.must(t, "volume", "ls", "-q"); out != "" {
		t.Errorf("volume ls after rm: %q", out)
	}
	if r := e.sh(t, []string{"--tmpfs", "/scratch", "--read-only"}, "touch /x 2>/dev/null || echo ro; touch /scratch/y && echo tmpfs"); r.stdout != "ro\ntmpfs\n" {
		t.Errorf("--read-only with --tmpfs: %s", r)
	}
	e.checkHostClean(t, before)
}

// TestRunMemoryLimit allocates 100 MB in a 32 MB container: the kernel's
// OOM killer ends it and run exits 137.
func TestRunMemoryLimit(t *testing.T) {
	e := newRunEnv(t)
	r := e.strata(t, "run", "--name", "hog", "--memory", "32m", e.image, "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
	if r.code != 137 {
		t.Errorf("exit %d, want 137:\n%s", r.code, r)
	}
	if got := e.must(t, "container", "inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", "hog"); got != "137 true\n" {
		t.Errorf("inspect: %q, want 137 true", got)
	}
	r = e.sh(t, []string{"--memory", "32m", "--cpus", "0.5", "--pids-limit", "50"},
		"cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null && echo small-ok")
	if r.code != 0 || r.stdout != "50\nsmall-ok\n" {
		t.Errorf("limits inside the container: %s", r)
	}
}

// TestRunDetachedPublish runs busybox httpd detached with a port published
// on 127.0.0.1, fetches a page through it, and stops it.
func TestRunDetachedPublish(t *testing.T) {
	e := newRunEnv(t)
	before := mounts(t)
	port := freePort(t)
	id := strings.TrimSpace(e.must(t, "run", "-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), e.image, "httpd", "-f", "-p", "80", "-h", "/www"))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q, want a 64-digit ID", id)
	}
	ps := e.must(t, "ps")
	if !strings.Contains(ps, id[:12]) || !strings.Contains(ps, "Up ") || !strings.Contains(ps, fmt.Sprintf("127.0.0.1:%d->80/tcp", port)) {
		t.Errorf("ps does not show the running container with its port:\n%s", ps)
	}
	body, err := httpGet(t.Context(), fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
	if err != nil || body != "hello-from-image\n" {
		t.Errorf("GET through the published port: %q %v", body, err)
	}
	e.must(t, "stop", "-t", "1", "web")
	ps = e.must(t, "ps", "-a")
	if !strings.Contains(ps, "Exited (137)") {
		t.Errorf("ps -a after stop (httpd as PID 1 ignores SIGTERM, so it is killed):\n%s", ps)
	}
	if out := e.must(t, "ps", "-q"); out != "" {
		t.Errorf("ps lists stopped containers: %q", out)
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		c.Close()
		t.Error("the port is still published after stop")
	}
	e.must(t, "rm", "web")
	e.checkHostClean(t, before)
}

// TestRunExec runs commands in a running container.
func TestRunExec(t *testing.T) {
	e := newRunEnv(t)
	e.must(t, "run", "-d", "--name", "box", e.image, "sh", "-c", "echo ready > /tmp/ready; exec sleep 1000")
	r := e.strata(t, "exec", "box", "sh", "-c", `until test -f /tmp/ready; do sleep 0.1; done; hostname; cat /proc/1/cmdline | tr '\0' ' '; echo; test $$ -gt 1 && echo not-pid-1`)
	host := strings.TrimSpace(e.must(t, "container", "inspect", "-f", "{{.Config.Hostname}}", "box"))
	if r.code != 0 || r.stdout != host+"\nsleep 1000 \nnot-pid-1\n" {
		t.Errorf("exec sees another container than box (hostname %s):\n%s", host, r)
	}
	if r := e.strata(t, "exec", "-e", "X=y", "-w", "/www", "-u", "nobody", "box", "sh", "-c", `echo "$X $(pwd) $(id -u)"; exit 3`); r.code != 3 || r.stdout != "y /www 65534\n" {
		t.Errorf("exec -e -w -u with exit 3:\n%s", r)
	}
	cmd := exec.Command(fx.bin, "--root", e.root, "exec", "-i", "box", "cat")
	cmd.Stdin = strings.NewReader("through stdin")
	if out, err := cmd.Output(); err != nil || string(out) != "through stdin" {
		t.Errorf("exec -i: %q %v", out, err)
	}
	if r := e.strata(t, "exec", "box", "no-such-command"); r.code != 127 {
		t.Errorf("exec of a missing command: %s", r)
	}
	e.must(t, "kill", "box")
	if r := e.strata(t, "exec", "box", "true"); r.code == 0 {
		t.Errorf("exec into a stopped container succeeded:\n%s", r)
	}
	if got := e.must(t, "container", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "box"); got != "exited 137\n" {
		t.Errorf("after kill: %q", got)
	}
}

// TestRunLogs follows a detached container's output until it ends.
func TestRunLogs(t *testing.T) {
	e := newRunEnv(t)
	e.must(t, "run", "-d", "--name", "talker", e.image, "sh", "-c",
		`for i in 1 2 3 4 5; do echo out $i; echo err $i >&2; sleep 0.2; done`)
	r := e.strata(t, "logs", "-f", "talker")
	var wantOut, wantErr string
	for i := 1; i <= 5; i++ {
		wantOut += fmt.Sprintf("out %d\n", i)
		wantErr += fmt.Sprintf("err %d\n", i)
	}
	if r.code != 0 || r.stdout != wantOut || r.stderr != wantErr {
		t.Errorf("logs -f: want every line, each on its stream:\n%s", r)
	}
	// logs -f returned because the container ended.
	if got := e.must(t, "container", "inspect", "-f", "{{.State.Status}}", "talker"); got != "exited\n" {
		t.Errorf("status after logs -f returned: %q", got)
	}
	// The tail counts the lines of both streams, as Docker's does.
	if r := e.strata(t, "logs", "--tail", "2", "talker"); r.stdout != "out 5\n" || r.stderr != "err 5\n" {
		t.Errorf("logs --tail 2:\n%s", r)
	}
	e.must(t, "rm", "talker")
}

// TestRunRemoveForce removes a running container and checks --rm with -d.
func TestRunRemoveForce(t *testing.T) {
	e := newRunEnv(t)
	before := mounts(t)
	e.must(t, "run", "-d", "--name", "long", "-v", "/tmp", e.image, "sleep", "1000")
	if r := e.strata(t, "rm", "long"); r.code == 0 {
		t.Errorf("rm of a running container succeeded without -f:\n%s", r)
	}
	e.must(t, "rm", "-f", "-v", "long")
	if left := procs(func(pid int, _ string, _ []byte) bool { return cmdline(pid) == "sleep 1000" }); len(left) > 0 {
		t.Errorf("the container's process outlived rm -f: %v", left)
	}
	e.must(t, "run", "-d", "--rm", "--name", "brief", e.image, "true")
	if _, err := waitGone(t, e, "brief"); err != nil {
		t.Error(err)
	}
	e.checkHostClean(t, before)
	if out := e.must(t, "volume", "ls", "-q"); out != "" {
		t.Errorf("anonymous volumes left: %q", out)
	}
}

// waitGone waits until the --rm container's monitor removed it.
func waitGone(t *testing.T, e *runEnv, name string) (bool, error) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if r := e.strata(t, "container", "inspect", name); r.code != 0 {
			return true, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false, fmt.Errorf("container %s was not removed by --rm", name)
}

// freePort returns a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// httpGet fetches url, retrying while the server is not up yet.
func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for ctx.Err() == nil {
		resp, err := client.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return string(b), nil
			}
			lastErr = fmt.Errorf("status %s, %v", resp.Status, err)
		} else {
			lastErr = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", lastErr
}

// TestRunTerminal runs an interactive shell with -it on a pseudo-terminal
// strata gets as its own, types into it, resizes it, and checks the exit.
func TestRunTerminal(t *testing.T) {
	e := newRunEnv(t)
	master, slave := openPty(t, 24, 80)
	defer master.Close()
	cmd := exec.Command(fx.bin, "--root", e.root, "run", "-it", "--rm", e.image, "sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	out := &ptyOutput{}
	go out.collect(master)
	type step struct{ input, wait string }
	for _, s := range []step{
		{"", "# "},
		{"tty; stty size; echo $TERM\n", "xterm"},
		{"RESIZE", ""},
		{"stty size\n", "30 100"},
		{"exit 7\n", ""},
	} {
		if s.input == "RESIZE" {
			// The kernel sends strata SIGWINCH; strata resizes the
			// container's terminal.
			setWinsize(t, master, 30, 100)
			continue
		}
		if s.input != "" {
			if _, err := master.WriteString(s.input); err != nil {
				t.Fatal(err)
			}
		}
		if s.wait != "" && !out.waitFor(s.wait) {
			t.Fatalf("no %q in the terminal output:\n%s", s.wait, out.String())
		}
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("run -it ended with %v, want exit status 7\n%s", err, out.String())
	}
	got := strings.ReplaceAll(out.String(), "\r\n", "\n")
	for _, want := range []string{"/dev/pts/0\n24 80\nxterm\n", "30 100\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, got)
		}
	}
}

// openPty opens a pseudo-terminal pair of the given size.
func openPty(t *testing.T, rows, cols uint16) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", fd), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	setWinsize(t, m, rows, cols)
	return m, s
}

func setWinsize(t *testing.T, f *os.File, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
}

// ptyOutput gathers what a terminal prints.
type ptyOutput struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	seen int // waitFor looks after this offset
}

func (p *ptyOutput) collect(r io.Reader) {
	b := make([]byte, 4096)
	for {
		n, err := r.Read(b)
		p.mu.Lock()
		p.buf.Write(b[:n])
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (p *ptyOutput) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

// waitFor waits (up to a generous bound) until s has been printed since
// the last wait, so that an earlier copy does not count.
func (p *ptyOutput) waitFor(s string) bool {
	for range 400 {
		p.mu.Lock()
		i := strings.Index(p.buf.String()[p.seen:], s)
		if i >= 0 {
			p.seen += i + len(s)
		}
		p.mu.Unlock()
		if i >= 0 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// TestContainerConcurrentCommands runs several strata processes on one
// root at once: containers started together all run, one name goes to one
// container only, and parallel removals leave nothing.
func TestContainerConcurrentCommands(t *testing.T) {
	e := newRunEnv(t)
	before := mounts(t)
	const n = 4
	var wg sync.WaitGroup
	results := make([]result, 2*n)
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("c%d", i)
			if i >= n {
				name = "dup"
			}
			results[i] = e.strata(t, "run", "-d", "--name", name, e.image, "sleep", "1000")
		}()
	}
	wg.Wait()
	dup := 0
	for i, r := range results {
		switch {
		case i < n && r.code != 0:
			t.Errorf("run -d c%d: %s", i, r)
		case i >= n && r.code == 0:
			dup++
		}
	}
	if dup != 1 {
		t.Errorf("%d containers were started under the name dup, want 1", dup)
	}
	ids := e.containerIDs(t)
	if len(ids) != n+1 {
		t.Fatalf("%d containers exist, want %d", len(ids), n+1)
	}
	if r := e.strata(t, "ps", "-q"); len(strings.Fields(r.stdout)) != n+1 {
		t.Errorf("ps lists %d running containers, want %d:\n%s", len(strings.Fields(r.stdout)), n+1, r)
	}
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := e.strata(t, "rm", "-f", id); r.code != 0 {
				t.Errorf("rm -f %s: %s", id[:12], r)
			}
		}()
	}
	wg.Wait()
	e.checkHostClean(t, before)
}
