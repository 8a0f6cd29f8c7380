package exec_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/exec"
	"github.com/strata-build/strata/snapshot"
)

// containerSpec is e.spec with the options `strata run` uses.
func (e *testEnv) containerSpec(script string) exec.Spec {
	s := e.spec(script)
	s.CommandIsInit = true
	s.CgroupNS = true
	s.FreshSysfs = true
	s.NoNewPrivileges = true
	s.NewSession = true
	s.Network = exec.NetworkNone
	s.Hostname = "ctr"
	return s
}

func TestRunContainerOptions(t *testing.T) {
	tests := []struct {
		name   string
		script string
		edit   func(*exec.Spec)
		want   string
	}{
		{
			name: "the command is PID 1",
			// The glob runs in sh itself: no child can race the listing.
			script: `echo $$; cd /proc && echo [0-9]*`,
			want:   "1\n1\n",
		},
		{
			name:   "no_new_privs and default capabilities",
			script: "grep -E '^(NoNewPrivs|CapBnd|CapEff)' /proc/self/status",
			want:   "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t1\n",
		},
		{
			name:   "user switched before exec",
			script: "id -u; id -g; grep CapEff /proc/self/status",
			edit:   func(s *exec.Spec) { s.Process.UID, s.Process.GID = 65534, 65534 },
			want:   "65534\n65534\nCapEff:\t0000000000000000\n",
		},
		{
			name:   "fresh sysfs shows only the sandbox's interfaces",
			script: "ls /sys/class/net; touch /sys/x 2>/dev/null || echo ro",
			want:   "lo\nro\n",
		},
		{
			name:   "cgroup namespace rooted at the sandbox cgroup and read-only mounts",
			script: `cut -d: -f3 /proc/self/cgroup | sort -u; test -d /sys/fs/cgroup && (mkdir /sys/fs/cgroup/x 2>/dev/null || echo ro)`,
			want:   "/\nro\n",
		},
		{
			name:   "read-only root and writable mounts",
			script: "touch /x 2>/dev/null || echo root-ro; touch /scratch/y && echo tmpfs-rw; echo ok > /dev/null && echo dev-rw",
			edit: func(s *exec.Spec) {
				s.ReadOnlyRoot = true
				s.Mounts = []snapshot.Mount{{Type: "tmpfs", Source: "tmpfs", Target: "/scratch"}}
			},
			want: "root-ro\ntmpfs-rw\ndev-rw\n",
		},
		{
			name:   "own session",
			script: `set -- $(cat /proc/self/stat); echo "$6"`,
			want:   "1\n",
		},
		{
			name:   "init mode with the container options",
			script: `echo $$; grep NoNewPrivs /proc/self/status; cut -d: -f3 /proc/self/cgroup | sort -u`,
			edit:   func(s *exec.Spec) { s.CommandIsInit = false },
			want:   "", // PID varies; checked below
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			spec := e.containerSpec(tc.script)
			if tc.edit != nil {
				tc.edit(&spec)
			}
			r := e.run(t, t.Context(), spec)
			if r.err != nil || r.code != 0 {
				t.Fatalf("Run: code %d, err %v, stderr %q", r.code, r.err, r.stderr)
			}
			if tc.want == "" {
				lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
				if len(lines) != 3 || lines[0] == "1" || lines[1] != "NoNewPrivs:\t1" || lines[2] != "/" {
					t.Errorf("stdout %q: want a PID other than 1, no_new_privs, cgroup /", r.stdout)
				}
				return
			}
			if r.stdout != tc.want {
				t.Errorf("stdout %q, want %q", r.stdout, tc.want)
			}
		})
	}
}

func TestRunCommandIsInitExitCodes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		started  bool
	}{
		{"exit status", []string{"sh", "-c", "exit 7"}, 7, true},
		{"not found", []string{"nope"}, 127, false},
		{"not executable", []string{"/etc"}, 126, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := e.containerSpec("")
			spec.Process.Args = tc.args
			var mu sync.Mutex
			started := false
			spec.Started = func() {
				mu.Lock()
				started = true
				mu.Unlock()
			}
			r := e.run(t, t.Context(), spec)
			if r.err != nil || r.code != tc.wantCode {
				t.Fatalf("Run: code %d err %v (stderr %q), want code %d", r.code, r.err, r.stderr, tc.wantCode)
			}
			mu.Lock()
			defer mu.Unlock()
			if started != tc.started {
				t.Errorf("Started called: %v, want %v", started, tc.started)
			}
		})
	}
}

// TestRunCreatedAndKill checks the Created hook runs before the command
// (which sees what the hook wrote) and that a SIGKILL from outside is the
// command's own death: 137.
func TestRunCreatedAndKill(t *testing.T) {
	e := newEnv(t)
	shared := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(shared, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := e.containerSpec("cat /etc/hosts; echo $$ ready; exec sleep 1000")
	spec.Mounts = []snapshot.Mount{{Type: "bind", Source: shared, Target: "/etc/hosts"}}
	pidc := make(chan int, 1)
	spec.Created = func(pid int) error {
		pidc <- pid
		return os.WriteFile(shared, []byte("written by Created\n"), 0o644)
	}
	pr, pw := io.Pipe()
	spec.Process.Stdout = pw
	done := make(chan result, 1)
	go func() {
		var stderr bytes.Buffer
		spec.Process.Stderr = &stderr
		code, err := exec.Run(t.Context(), spec)
		pw.Close()
		done <- result{code: code, err: err, stderr: stderr.String()}
	}()
	pid := <-pidc
	out := make([]byte, 64)
	n, _ := io.ReadAtLeast(pr, out, len("written by Created\n1 ready\n"))
	if got := string(out[:n]); got != "written by Created\n1 ready\n" {
		t.Errorf("command printed %q", got)
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	r := <-done
	if r.err != nil || r.code != 137 {
		t.Errorf("Run: code %d err %v, want 137 (stderr %q)", r.code, r.err, r.stderr)
	}
	e.checkClean(t)
}

func TestRunCreatedFails(t *testing.T) {
	e := newEnv(t)
	spec := e.containerSpec("echo ran")
	spec.Created = func(int) error { return fmt.Errorf("no network today") }
	r := e.run(t, t.Context(), spec)
	if r.err == nil || !strings.Contains(r.err.Error(), "no network today") || r.stdout != "" {
		t.Errorf("Run: code %d err %v stdout %q; want the hook's error and no command", r.code, r.err, r.stdout)
	}
}

// console collects what the sandbox's terminal prints.
type console struct {
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (c *console) attach(master *os.File) {
	go func() {
		defer close(c.done)
		defer master.Close()
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			c.mu.Lock()
			c.out.Write(buf[:n])
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

func TestRunTerminal(t *testing.T) {
	for _, commandIsInit := range []bool{true, false} {
		t.Run("command is init "+strconv.FormatBool(commandIsInit), func(t *testing.T) {
			e := newEnv(t)
			spec := e.containerSpec("tty; stty size; test -t 0 && test -t 1 && test -t 2 && echo all-tty; " +
				`set -- $(cat /proc/self/stat); test "$8" = "$5" && echo foreground`)
			spec.CommandIsInit = commandIsInit
			spec.Terminal = true
			spec.WindowSize = exec.WindowSize{Rows: 33, Cols: 111}
			con := &console{done: make(chan struct{})}
			spec.Console = con.attach
			r := e.run(t, t.Context(), spec)
			if r.err != nil || r.code != 0 {
				t.Fatalf("Run: code %d err %v", r.code, r.err)
			}
			<-con.done
			got := strings.ReplaceAll(con.out.String(), "\r\n", "\n")
			if want := "/dev/pts/0\n33 111\nall-tty\nforeground\n"; got != want {
				t.Errorf("terminal showed %q, want %q", got, want)
			}
		})
	}
}

func TestEnter(t *testing.T) {
	e := newEnv(t)
	spec := e.containerSpec("echo inside > /marker; exec sleep 1000")
	spec.Hostname = "entered"
	started := make(chan int, 1)
	var pid int
	spec.Created = func(p int) error { pid = p; return nil }
	spec.Started = func() { started <- pid }
	done := make(chan result, 1)
	go func() {
		code, err := exec.Run(t.Context(), spec)
		done <- result{code: code, err: err}
	}()
	p := <-started
	defer func() {
		_ = unix.Kill(p, unix.SIGKILL)
		if r := <-done; r.err != nil || r.code != 137 {
			t.Errorf("sandbox: code %d err %v", r.code, r.err)
		}
		e.checkClean(t)
	}()

	tests := []struct {
		name     string
		proc     exec.Process
		wantCode int
		want     string
	}{
		{"namespaces and root", exec.Process{Args: []string{"sh", "-c",
			`until test -f /marker; do sleep 0.05; done; cat /marker; hostname; test $$ -gt 1 && echo not-pid-1; ls /sys/class/net; grep NoNewPrivs /proc/self/status`}},
			0, "inside\nentered\nnot-pid-1\nlo\nNoNewPrivs:\t1\n"},
		{"cwd and user", exec.Process{Args: []string{"sh", "-c", "pwd; id -u"}, Cwd: "/bin", UID: 65534, GID: 65534}, 0, "/bin\n65534\n"},
		{"exit status", exec.Process{Args: []string{"sh", "-c", "exit 9"}}, 9, ""},
		{"not found", exec.Process{Args: []string{"nope"}}, 127, ""},
		{"stdin", exec.Process{Args: []string{"cat"}, Stdin: strings.NewReader("fed")}, 0, "fed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			tc.proc.Stdout, tc.proc.Stderr = &stdout, &stderr
			if tc.proc.Env == nil {
				tc.proc.Env = []string{"PATH=/bin"}
			}
			code, err := exec.Enter(t.Context(), exec.EnterSpec{PID: p, Process: tc.proc, NoNewPrivileges: true})
			if err != nil || code != tc.wantCode {
				t.Fatalf("Enter: code %d err %v stderr %q; want %d", code, err, stderr.String(), tc.wantCode)
			}
			if stdout.String() != tc.want {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.want)
			}
		})
	}
	if _, err := exec.Enter(t.Context(), exec.EnterSpec{PID: p, Process: exec.Process{Args: []string{"true"}, Cwd: "/missing"}}); err == nil {
		t.Error("Enter with a missing working dir did not fail")
	}
}

func TestSpawn(t *testing.T) {
	requireRoot(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pid, err := exec.Spawn(exec.Helper{Name: "report", Payload: []byte("hello")}, nil, w)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	// Reap it: it is our child, even if it would outlive us.
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
		t.Errorf("helper: %v status %v", err, ws)
	}
	want := fmt.Sprintf("hello sid=%d pid=%d", pid, pid)
	if string(b) != want {
		t.Errorf("helper reported %q, want %q (its own session)", b, want)
	}
	if _, err := exec.Spawn(exec.Helper{}, nil); err == nil {
		t.Error("Spawn without a name did not fail")
	}
}
