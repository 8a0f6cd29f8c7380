package exec

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		opts []string
		want parsedOptions
	}{
		{nil, parsedOptions{}},
		{[]string{"ro", "nosuid", "rbind"}, parsedOptions{flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_BIND | unix.MS_REC}},
		{[]string{"ro", "rw"}, parsedOptions{}},
		{[]string{"lowerdir=a:b", "upperdir=/u", "workdir=/w", "index=off"},
			parsedOptions{data: "lowerdir=a:b,upperdir=/u,workdir=/w,index=off"}},
		{[]string{"rprivate", "size=1m", "defaults"}, parsedOptions{propagation: unix.MS_PRIVATE | unix.MS_REC, data: "size=1m"}},
		{[]string{"slave"}, parsedOptions{propagation: unix.MS_SLAVE}},
		{[]string{"noexec", "exec", "nodev"}, parsedOptions{flags: unix.MS_NODEV}},
	}
	for _, tc := range tests {
		if got := parseOptions(tc.opts); got != tc.want {
			t.Errorf("parseOptions(%q) = %+v, want %+v", tc.opts, got, tc.want)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	sbin := filepath.Join(dir, "sbin")
	for _, d := range []string{bin, sbin, filepath.Join(bin, "adir")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Join(bin, "tool"), 0o755}, {filepath.Join(sbin, "tool"), 0o755}, {filepath.Join(bin, "plain"), 0o644}} {
		if err := os.WriteFile(f.path, nil, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, cmd string
		env       []string
		want      string
		wantErr   bool
	}{
		{"first PATH entry wins", "tool", []string{"PATH=" + bin + ":" + sbin}, filepath.Join(bin, "tool"), false},
		{"last PATH variable wins", "tool", []string{"PATH=/x", "PATH=" + sbin}, filepath.Join(sbin, "tool"), false},
		{"relative PATH entry uses cwd", "tool", []string{"PATH=sbin"}, filepath.Join(sbin, "tool"), false},
		{"not executable", "plain", []string{"PATH=" + bin}, "", true},
		{"directory", "adir", []string{"PATH=" + bin}, "", true},
		{"missing", "nope", []string{"PATH=" + bin}, "", true},
		{"slash is taken as is", "./x/y", nil, "./x/y", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookPath(tc.cmd, tc.env, dir)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("lookPath = %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestTailWriterLastLine(t *testing.T) {
	tw := &tailWriter{}
	for _, s := range []string{"first\n", "panic: boom", "\nlast line\n\n"} {
		if _, err := tw.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got := tw.lastLine(); got != "last line" {
		t.Errorf("lastLine = %q", got)
	}
	big := make([]byte, 10000)
	for i := range big {
		big[i] = 'a'
	}
	tw.Write(big)
	if len(tw.tail) > 4096 {
		t.Errorf("tail grew to %d bytes", len(tw.tail))
	}
}
