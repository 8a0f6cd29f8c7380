package integration

import (
	"slices"
	"testing"
)

// TestBaseImage checks the busybox base the other tests build on, as the
// registry serves it.
func TestBaseImage(t *testing.T) {
	f := needRoot(t)
	ref := f.registry + "/library/busybox:latest"
	c := readConfig(t, ref)
	if v, ok := envValue(c.Config.Env, "PATH"); !ok || v != defaultPath {
		t.Errorf("busybox Env %q, want PATH=%s", c.Config.Env, defaultPath)
	}
	if !slices.Equal(c.Config.Cmd, []string{"/bin/sh"}) || c.Config.WorkingDir != "" {
		t.Errorf("busybox Cmd %q WorkingDir %q, want [/bin/sh] and none", c.Config.Cmd, c.Config.WorkingDir)
	}
	if len(c.RootFS.DiffIDs) != 1 {
		t.Errorf("busybox has %d layers, want 1", len(c.RootFS.DiffIDs))
	}
}

func TestMirrorFromSources(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"deb822", "Types: deb\n# http://snapshot.debian.org/x\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n" +
			"Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n", "http://deb.example/debian"},
		{"security stanza first", "URIs: http://sec.example\nSuites: bookworm-security\n\nURIs: http://main.example/debian\nSuites: bookworm\n", "http://main.example/debian"},
		{"one-line with options", "# deb http://old.example bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n", "http://one.example/debian"},
		{"other suites only", "deb http://x.example/debian bullseye main\nURIs: http://y.example\nSuites: nodistro\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mirrorFromSources(tc.in); got != tc.want {
				t.Errorf("mirrorFromSources = %q, want %q", got, tc.want)
			}
		})
	}
}
