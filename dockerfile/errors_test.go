package dockerfile

import (
	"errors"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		msg  string
		line int // 0: no line
	}{
		{"empty", "", "the Dockerfile cannot be empty", 0},
		{"comments only", "# nothing\n", "file with no instructions", 0},
		{"only ARGs", "ARG A=1\n", "no stages to build", 0},
		{"unknown instruction", "FROM scratch\nFNTRYPOINT [\"x\"]", "unknown instruction: FNTRYPOINT", 2},
		{"instruction before FROM", "RUN x\nFROM scratch", "no build stage in current context", 1},
		{"ENV without value", "FROM busybox\n\nENV PATH", "ENV must have two arguments", 3},
		{"nested JSON", "FROM busybox\nCMD [ \"echo\", [ \"x\" ] ]", "arrays must be comprised of strings only", 2},
		{"unknown flag", "FROM busybox\nCOPY --nope=1 a b", "unknown flag: --nope", 2},
		{"bad network", "FROM busybox\nRUN --network=wifi x", "invalid network mode", 2},
		{"unterminated heredoc", "FROM busybox\nRUN <<EOF\nx\n", "unterminated heredoc", 2},
		{"bad stage name", "FROM busybox AS 1x", "invalid name for build stage", 1},
		{"multi-line instruction", "FROM busybox\nCOPY \\\n  --bogus a b", "unknown flag", 2},
		{"unsupported syntax", "# syntax=example.com/my/frontend:2\nFROM busybox", "unsupported syntax directive", 1},
		{"bad escape", "# escape=x\nFROM busybox", "invalid escape token", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("Dockerfile", []byte(tc.src))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("message %q lacks %q", e.Msg, tc.msg)
			}
			if tc.line != 0 && e.Loc.Line != tc.line {
				t.Errorf("line %d, want %d", e.Loc.Line, tc.line)
			}
			if e.Loc.File != "Dockerfile" {
				t.Errorf("file %q", e.Loc.File)
			}
			if tc.line != 0 && !strings.HasPrefix(e.Error(), "Dockerfile:") {
				t.Errorf("Error() = %q", e.Error())
			}
		})
	}
}

func TestSyntaxDirectives(t *testing.T) {
	for _, s := range []string{
		"docker/dockerfile:1", "docker/dockerfile:1.7", "docker/dockerfile:1.7.1",
		"docker.io/docker/dockerfile:1", "docker/dockerfile:1-labs", "docker/dockerfile",
		"docker/dockerfile:1.4@sha256:" + strings.Repeat("0", 64),
	} {
		if _, err := Parse("Dockerfile", []byte("# syntax="+s+"\nFROM scratch")); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"docker/dockerfile:0.9", "docker/dockerfile-upstream:master", "tonistiigi/dockerfile:1"} {
		if _, err := Parse("Dockerfile", []byte("# syntax="+s+"\nFROM scratch")); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opts Options
		msg  string
		line int
	}{
		{"copy from later stage", "FROM busybox AS a\nCOPY --from=b /x /y\nFROM busybox AS b\nFROM a",
			Options{}, `cannot copy from stage "b", it needs to be defined before current stage "a"`, 2},
		{"copy from itself", "FROM busybox AS a\nCOPY --from=a /x /y", Options{}, "circular dependency detected", 2},
		{"copy from variable", "FROM scratch\nARG S=x\nCOPY --from=$S . .", Options{}, "variable expansion is not supported for --from", 3},
		{"bad stage index", "FROM scratch\nCOPY --from=3 a b", Options{}, "invalid stage index 3", 2},
		{"mount from later stage", "FROM busybox AS a\nRUN --mount=from=b,target=/b x\nFROM busybox AS b\nFROM a",
			Options{}, "cannot mount from stage", 2},
		{"blank base", "ARG IMG\nFROM $IMG", Options{}, "base name ($IMG) should not be blank", 2},
		{"required arg", "ARG FOO=${FOO:?\"custom error\"}\nFROM busybox", Options{}, "custom error", 1},
		{"unknown image", "FROM busybox\nRUN x\nFROM nosuch", Options{}, "nosuch: not found", 3},
		{"invalid reference", "FROM Busybox", Options{}, "failed to parse stage name", 1},
		{"octal chmod", "FROM scratch\nCOPY --chmod=64a foo /", Options{}, "invalid chmod parameter", 2},
		{"chmod too large", "FROM scratch\nCOPY --chmod=17777 foo /", Options{}, "invalid chmod parameter", 2},
		{"bad symbolic chmod", "FROM scratch\nCOPY --chmod=u+q foo /", Options{}, "invalid chmod parameter: 'u+q'", 2},
		{"chmod from ARG", "FROM scratch\nARG M=9\nCOPY --chmod=$M foo /", Options{}, "invalid chmod parameter: '9'", 3},
		{"link chown by name", "FROM scratch\nCOPY --link --chown=app foo /", Options{}, "can't be resolved when used with --link", 2},
		{"COPY of a URL", "FROM scratch\nCOPY https://x/y /", Options{}, "source can't be a URL for COPY", 2},
		{"checksum of a local file", "FROM scratch\nADD --checksum=sha256:00 f /", Options{}, "checksum requires HTTP(S) or Git sources", 2},
		{"bad signal", "FROM scratch\nSTOPSIGNAL SIGNOPE", Options{}, "invalid signal: SIGNOPE", 2},
		{"bad port", "FROM scratch\nEXPOSE 80/xyz", Options{}, "invalid proto", 2},
		{"empty volume", "FROM scratch\nENV V=\nVOLUME [\"$V\"]", Options{}, "can not be an empty string", 3},
		{"bad mount type", "FROM busybox\nRUN --mount=type=bogus x", Options{}, "unsupported mount type", 2},
		{"mount to root", "FROM busybox\nRUN --mount=type=tmpfs,target=/ x", Options{}, "invalid mount target", 2},
		{"bad platform", "FROM scratch", Options{Platform: "linux"}, "invalid platform", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := planError(t, tc.src, tc.opts)
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("message %q lacks %q", e.Msg, tc.msg)
			}
			if e.Loc.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", e.Loc.Line, tc.line, e)
			}
		})
	}
}

func TestErrorSpansLines(t *testing.T) {
	_, err := Parse("Dockerfile", []byte("FROM busybox\nRUN --bogus \\\n  x \\\n  y\n"))
	var e *Error
	if !errors.As(err, &e) || e.Loc.Line != 2 || e.Loc.EndLine != 4 {
		t.Fatalf("error %v: want lines 2-4", err)
	}
	p := mustPlan(t, "FROM scratch\nRUN wh\\\nat", Options{})
	if l := p.Target.Steps[0].Loc; l.Line != 2 || l.EndLine != 3 {
		t.Errorf("step location %+v, want 2-3", l)
	}
}
