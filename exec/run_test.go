package exec_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/exec"
	"github.com/strata-build/strata/snapshot"
)

func TestRunExitCodes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"success", []string{"sh", "-c", "exit 0"}, 0, ""},
		{"failure", []string{"sh", "-c", "exit 3"}, 3, ""},
		{"killed", []string{"sh", "-c", "kill -9 $$"}, 128 + 9, ""},
		{"not found", []string{"nope"}, 127, `exec: "nope": executable file not found in $PATH`},
		{"absolute path", []string{"/bin/true"}, 0, ""},
		{"missing absolute path", []string{"/bin/nope"}, 127, `exec: "/bin/nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := e.spec("")
			spec.Process.Args = tc.args
			r := e.run(t, t.Context(), spec)
			if r.err != nil {
				t.Fatalf("Run: %v", r.err)
			}
			if r.code != tc.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", r.code, tc.wantCode, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tc.wantStderr)
			}
		})
	}
	if got := e.upperEntries(t); len(got) != 0 {
		t.Errorf("upper dir not empty: %v", got)
	}
}

func TestRunEnvironment(t *testing.T) {
	tests := []struct {
		name      string
		script    string
		edit      func(*exec.Spec)
		want      string
		wantUpper []string
	}{
		{
			// PID 1 is strata-init; its Go threads take a few PIDs, so the
			// command's number varies, but nothing else is visible.
			name:   "own pid namespace",
			script: `set -- /proc/[0-9]*; echo $# $1; test "$2" = /proc/$$ -a $$ -gt 1 && echo ok`,
			want:   "2 /proc/1\nok\n",
		},
		{
			name:   "hostname and etc files",
			script: "hostname; cat /etc/hostname /etc/hosts /etc/resolv.conf",
			edit: func(s *exec.Spec) {
				s.Hostname = "box"
				s.Hosts = []byte("127.0.0.1 box\n")
				s.ResolvConf = []byte("nameserver 192.0.2.1\n")
			},
			want: "box\nbox\n127.0.0.1 box\nnameserver 192.0.2.1\n",
		},
		{
			name:   "dev",
			script: "echo x >/dev/null && test -c /dev/null && head -c 5 /dev/zero | wc -c && test -d /dev/shm && test -d /dev/pts && test -L /dev/fd && readlink /dev/ptmx",
			want:   "5\npts/ptmx\n",
		},
		{
			name:   "sys read-only throughout",
			script: "awk '$2 ~ /^\\/sys/ {split($4, o, \",\"); print o[1]}' /proc/mounts | sort -u; touch /sys/x 2>/dev/null || echo denied",
			want:   "ro\ndenied\n",
		},
		{
			name:   "kernel files protected and capabilities dropped",
			script: "test -w /proc/sysrq-trigger || echo protected; grep CapBnd /proc/self/status",
			want:   "protected\nCapBnd:\t00000000a80425fb\n",
		},
		{
			name:   "network none has only lo up",
			script: "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ifconfig lo | grep -c UP",
			edit:   func(s *exec.Spec) { s.Network = exec.NetworkNone },
			want:   "lo\n1\n",
		},
		{
			name:   "user switching",
			script: "id -u; id -g; id -G; grep CapEff /proc/self/status",
			edit: func(s *exec.Spec) {
				s.Process.UID, s.Process.GID = 65534, 65534
				s.Process.AdditionalGIDs = []uint32{10, 20}
			},
			want: "65534\n65534\n65534 10 20\nCapEff:\t0000000000000000\n",
		},
		{
			name:   "cwd created and env kept with HOME from passwd",
			script: `pwd; echo "$FOO"; echo "${HOME-unset}"; umask`,
			edit: func(s *exec.Spec) {
				s.Process.Cwd = "/a/b"
				s.Process.Env = []string{"PATH=/bin", "FOO=bar baz"}
			},
			want:      "/a/b\nbar baz\n/\n0022\n",
			wantUpper: []string{"a", "a/b"},
		},
		{
			name:   "default PATH when unset",
			script: "echo ok",
			edit:   func(s *exec.Spec) { s.Process.Env = nil },
			want:   "ok\n",
		},
		{
			name:   "stdin",
			script: "cat",
			edit:   func(s *exec.Spec) { s.Process.Stdin = strings.NewReader("from stdin") },
			want:   "from stdin",
		},
		{
			name:   "HOME given in env wins",
			script: `echo "$HOME"`,
			edit:   func(s *exec.Spec) { s.Process.Env = []string{"HOME=/custom"} },
			want:   "/custom\n",
		},
		{
			name:      "USER by name resolved in the image",
			script:    `mkdir -p /etc && printf 'root:x:0:0::/root:/bin/sh\napp:x:1234:4321::/home/app:/bin/sh\n' >/etc/passwd; echo done`,
			want:      "done\n",
			wantUpper: []string{"etc", "etc/passwd"},
		},
		{
			name:      "stub dir kept when the command used it",
			script:    "echo root:x:0:0::/:/bin/sh >/etc/passwd",
			edit:      func(s *exec.Spec) { s.Hosts = []byte("127.0.0.1 localhost\n") },
			wantUpper: []string{"etc", "etc/passwd"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			spec := e.spec(tc.script)
			if tc.edit != nil {
				tc.edit(&spec)
			}
			r := e.run(t, t.Context(), spec)
			if r.err != nil || r.code != 0 {
				t.Fatalf("Run: code %d, err %v, stderr %q", r.code, r.err, r.stderr)
			}
			if r.stdout != tc.want {
				t.Errorf("stdout %q, want %q", r.stdout, tc.want)
			}
			if got := e.upperEntries(t); !slices.Equal(got, tc.wantUpper) {
				t.Errorf("upper dir has %v, want %v", got, tc.wantUpper)
			}
		})
	}
}

func TestRunExtraMounts(t *testing.T) {
	e := newEnv(t)
	data := t.TempDir()
	conf := filepath.Join(t.TempDir(), "conf")
	if err := os.WriteFile(conf, []byte("setting=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := e.spec("echo out >/data/out; cat /etc/conf; (echo x >/etc/conf) 2>/dev/null || echo ro-ok; touch /scratch/t && echo tmp-ok")
	spec.Mounts = []snapshot.Mount{
		{Type: "bind", Source: data, Target: "/data", Options: []string{"rbind"}},
		{Type: "bind", Source: conf, Target: "/etc/conf", Options: []string{"ro"}},
		{Type: "tmpfs", Source: "tmpfs", Target: "/scratch", Options: []string{"nosuid", "size=1m"}},
	}
	r := e.run(t, t.Context(), spec)
	if r.err != nil || r.code != 0 {
		t.Fatalf("Run: code %d, err %v, stderr %q", r.code, r.err, r.stderr)
	}
	if want := "setting=1\nro-ok\ntmp-ok\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	if b, err := os.ReadFile(filepath.Join(data, "out")); err != nil || string(b) != "out\n" {
		t.Errorf("bind-mounted dir: %q, %v", b, err)
	}
	if got := e.upperEntries(t); len(got) != 0 {
		t.Errorf("stubs left in upper dir: %v", got)
	}
}

func TestRunSymlinkCannotEscapeRoot(t *testing.T) {
	e := newEnv(t)
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.Symlink("/../../.."+outside, filepath.Join(e.lower, "etc")); err != nil {
		t.Fatal(err)
	}
	spec := e.spec("cat /etc/hosts")
	spec.Hosts = []byte("10.0.0.1 inside\n")
	r := e.run(t, t.Context(), spec)
	if r.err != nil || r.code != 0 {
		t.Fatalf("Run: code %d, err %v, stderr %q", r.code, r.err, r.stderr)
	}
	if r.stdout != "10.0.0.1 inside\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if _, err := os.Lstat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host path outside the root was touched: %v", err)
	}
	if got := e.upperEntries(t); len(got) != 0 {
		t.Errorf("stubs left in upper dir: %v", got)
	}
}

func TestRunRestoresImageDirTimes(t *testing.T) {
	e := newEnv(t)
	etc := filepath.Join(e.lower, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(etc, old, old); err != nil {
		t.Fatal(err)
	}
	spec := e.spec("test -f /etc/hosts")
	spec.Hosts = []byte("127.0.0.1 localhost\n")
	r := e.run(t, t.Context(), spec)
	if r.err != nil || r.code != 0 {
		t.Fatalf("Run: code %d, err %v, stderr %q", r.code, r.err, r.stderr)
	}
	if _, err := os.Lstat(filepath.Join(e.upper, "etc", "hosts")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hosts stub left in upper dir: %v", err)
	}
	// Making the stub copied /etc up; its times must be the image's again.
	if fi, err := os.Stat(filepath.Join(e.upper, "etc")); err == nil && !fi.ModTime().Equal(old) {
		t.Errorf("etc mtime %v, want %v", fi.ModTime(), old)
	}
}

func TestRunKillsBackgroundProcesses(t *testing.T) {
	e := newEnv(t)
	start := time.Now()
	r := e.run(t, t.Context(), e.spec("sleep 100 & echo started"))
	if r.err != nil || r.code != 0 {
		t.Fatalf("Run: code %d, err %v, stderr %q", r.code, r.err, r.stderr)
	}
	if r.stdout != "started\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v: background process kept it alive", d)
	}
}

func TestRunCancel(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	spec := e.spec("sleep 4321 & sleep 4321")
	spec.Hosts = []byte("127.0.0.1 localhost\n")
	r := e.run(t, ctx, spec)
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("Run: code %d, err %v; want deadline exceeded", r.code, r.err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, _ := os.ReadFile(p); string(b) == "sleep\x004321\x00" {
			t.Errorf("process survived the cancel: %s", p)
		}
	}
	cancelled, stop := context.WithCancel(t.Context())
	stop()
	if _, err := exec.Run(cancelled, e.spec("true")); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with cancelled ctx: %v", err)
	}
}

func TestRunSetupFailure(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		edit    func(*exec.Spec)
		wantErr string
	}{
		{"bad root", func(s *exec.Spec) {
			s.Root = snapshot.Mount{Type: "bind", Source: filepath.Join(e.dir, "missing"), Target: "/"}
		}, "mounting root"},
		{"bad extra mount", func(s *exec.Spec) {
			s.Hosts = []byte("127.0.0.1 localhost\n")
			s.Mounts = []snapshot.Mount{{Type: "nosuchfs", Source: "none", Target: "/deep/dir"}}
		}, "mounting nosuchfs at /deep/dir"},
		{"mount over root", func(s *exec.Spec) {
			s.Mounts = []snapshot.Mount{{Type: "tmpfs", Source: "tmpfs", Target: "/.."}}
		}, "cannot mount over the root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := e.spec("echo ran")
			tc.edit(&spec)
			r := e.run(t, t.Context(), spec)
			if r.err == nil || !strings.Contains(r.err.Error(), tc.wantErr) {
				t.Fatalf("Run err %v, want one containing %q", r.err, tc.wantErr)
			}
			if r.code != -1 || r.stdout != "" {
				t.Errorf("code %d stdout %q: the command must not run", r.code, r.stdout)
			}
			if got := e.upperEntries(t); len(got) != 0 {
				t.Errorf("stubs left in upper dir after failed setup: %v", got)
			}
		})
	}
}

func TestRunInvalidSpec(t *testing.T) {
	tests := []struct {
		name string
		spec exec.Spec
	}{
		{"no args", exec.Spec{Root: snapshot.Mount{Type: "bind", Source: "/"}}},
		{"no root", exec.Spec{Process: exec.Process{Args: []string{"true"}}}},
		{"bad network", exec.Spec{Root: snapshot.Mount{Type: "bind", Source: "/"}, Network: "bridge",
			Process: exec.Process{Args: []string{"true"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.Run(t.Context(), tc.spec); err == nil {
				t.Fatal("Run accepted an invalid spec")
			}
		})
	}
}

func TestRunUserByName(t *testing.T) {
	e := newEnv(t)
	// The image's own passwd names the user; the host's never counts.
	if err := os.MkdirAll(filepath.Join(e.lower, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := "root:x:0:0::/root:/bin/sh\napp:x:1234:4321::/home/app:/bin/sh\n"
	if err := os.WriteFile(filepath.Join(e.lower, "etc", "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ user, want string }{
		{"app", "1234 4321 /home/app\n"},
		{"app:99", "1234 99 /home/app\n"},
		{"", "0 0 /root\n"},
		{"555", "555 0 /\n"},
	}
	for _, tc := range tests {
		spec := e.spec(`echo "$(id -u) $(id -g) $HOME"`)
		spec.Process.User = tc.user
		r := e.run(t, t.Context(), spec)
		if r.err != nil || r.code != 0 {
			t.Fatalf("user %q: code %d err %v stderr %q", tc.user, r.code, r.err, r.stderr)
		}
		if r.stdout != tc.want {
			t.Errorf("user %q: got %q, want %q", tc.user, r.stdout, tc.want)
		}
	}
	spec := e.spec("true")
	spec.Process.User = "ghost"
	if r := e.run(t, t.Context(), spec); r.err == nil || !strings.Contains(r.err.Error(), "ghost") {
		t.Errorf("unknown user: err %v, want one naming the user", r.err)
	}
}
