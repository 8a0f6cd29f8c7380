package integration

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseExpectAccepts(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, e *Expect)
	}{
		{"comments and blanks", "# c\n\n   # indented\nexists /a\n", func(t *testing.T, e *Expect) {
			if len(e.Phases) != 1 || len(e.Phases[0].Assertions) != 1 || e.Phases[0].Assertions[0].Path != "/a" {
				t.Fatalf("got %+v", e.Phases[0])
			}
		}},
		{"quoted text", `file /f equals "a\tb\n"`, func(t *testing.T, e *Expect) {
			a := e.Phases[0].Assertions[0]
			if a.Sub != "equals" || a.Text != "a\tb\n" {
				t.Fatalf("got %q %q", a.Sub, a.Text)
			}
		}},
		{"literal text keeps inner blanks, trims trailing", "file /f contains root:x:0:0: \t", func(t *testing.T, e *Expect) {
			if got := e.Phases[0].Assertions[0].Text; got != "root:x:0:0:" {
				t.Fatalf("got %q", got)
			}
		}},
		{"literal text starting with blank", "env test=value value2", func(t *testing.T, e *Expect) {
			if got := e.Phases[0].Assertions[0].Text; got != "test=value value2" {
				t.Fatalf("got %q", got)
			}
		}},
		{"quoted path", `file "/a b/c" size 3`, func(t *testing.T, e *Expect) {
			a := e.Phases[0].Assertions[0]
			if a.Path != "/a b/c" || a.Num != 3 || a.Sub != "size" {
				t.Fatalf("got %+v", a)
			}
		}},
		{"sha256", "file /x sha256:" + strings.Repeat("ab", 32), func(t *testing.T, e *Expect) {
			a := e.Phases[0].Assertions[0]
			if a.Sub != "sha256" || a.Text != strings.Repeat("ab", 32) {
				t.Fatalf("got %+v", a)
			}
		}},
		{"matches compiles", `file /d matches ^[0-9a-f]{64}  -\n$`, func(t *testing.T, e *Expect) {
			if re := e.Phases[0].Assertions[0].Re; re == nil || !re.MatchString(strings.Repeat("a", 64)+"  -\n") {
				t.Fatalf("regexp %v", re)
			}
		}},
		{"dir entries, empty and quoted", "dir /d entries\ndir /e entries a \"b c\"", func(t *testing.T, e *Expect) {
			as := e.Phases[0].Assertions
			if as[0].Names == nil || len(as[0].Names) != 0 || !reflect.DeepEqual(as[1].Names, []string{"a", "b c"}) {
				t.Fatalf("got %q %q", as[0].Names, as[1].Names)
			}
		}},
		{"symlink", "symlink /hello -> /dev/null", func(t *testing.T, e *Expect) {
			if a := e.Phases[0].Assertions[0]; a.Path != "/hello" || a.Text != "/dev/null" {
				t.Fatalf("got %+v", a)
			}
		}},
		{"mode owner hardlink", "mode /s 6644\nowner /o 1:*\nhardlink /a /b", func(t *testing.T, e *Expect) {
			as := e.Phases[0].Assertions
			if as[0].Num != 0o6644 || as[1].UID != "1" || as[1].GID != "*" || as[2].Path2 != "/b" {
				t.Fatalf("got %+v", as)
			}
		}},
		{"layers", "layers 2\nlayers +0", func(t *testing.T, e *Expect) {
			as := e.Phases[0].Assertions
			if as[0].Num != 2 || as[0].Sub != "" || as[1].Sub != "+" || as[1].Num != 0 {
				t.Fatalf("got %+v", as)
			}
		}},
		{"config forms", "cmd null\nentrypoint [\"a\",\"♥\"]\nworkdir \"\"\nhealthcheck interval 5s\nhealthcheck retries 3\nexposed-ports 80/tcp 81/udp\ntop-layer lacks ./a/*", func(t *testing.T, e *Expect) {
			as := e.Phases[0].Assertions
			if as[0].JSON != nil || !reflect.DeepEqual(as[1].JSON, []string{"a", "♥"}) || as[2].Text != "" ||
				as[3].Dur != 5*time.Second || as[4].Num != 3 || len(as[5].Names) != 2 || as[6].Text != "a/*" {
				t.Fatalf("got %+v", as)
			}
		}},
		{"phases carry options and mutations", "build-arg A=1\ntarget x\nfile /a\nrebuild\nbuild-arg B=\nno-cache\nwrite f \"x\\n\"\nrename a b\nremove c/d\nsame /u\n", func(t *testing.T, e *Expect) {
			if len(e.Phases) != 2 {
				t.Fatalf("phases %d", len(e.Phases))
			}
			p0, p1 := e.Phases[0], e.Phases[1]
			if *p0.Target != "x" || p1.Target != nil || !p1.NoCache || p0.NoCache {
				t.Fatalf("options %+v %+v", p0, p1)
			}
			if !reflect.DeepEqual(p1.BuildArgs, []BuildArg{{"B", ""}}) {
				t.Fatalf("build args %+v", p1.BuildArgs)
			}
			m := p1.Mutations
			if len(m) != 3 || m[0].Text != "x\n" || m[1].Path != "a" || m[1].New != "b" || m[2].Op != "remove" || m[2].Path != "c/d" {
				t.Fatalf("mutations %+v", m)
			}
		}},
		{"error with text and range", "error custom error\nerror-line 2-3", func(t *testing.T, e *Expect) {
			er := e.Phases[0].Error
			if er == nil || er.Text != "custom error" || er.LineFrom != 2 || er.LineTo != 3 {
				t.Fatalf("got %+v", er)
			}
		}},
		{"bare error", "target t\nerror", func(t *testing.T, e *Expect) {
			if er := e.Phases[0].Error; er == nil || er.Text != "" || er.LineFrom != 0 {
				t.Fatalf("got %+v", er)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseExpect(strings.NewReader(tc.in))
			if err != nil {
				t.Fatalf("ParseExpect(%q): %v", tc.in, err)
			}
			tc.check(t, e)
		})
	}
}

func TestParseExpectRejects(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"unknown keyword", "exist /a", "unknown keyword"},
		{"option after assertion", "exists /a\ntarget x", "option target after"},
		{"option after mutation", "exists /a\nrebuild\nwrite f x\nbuild-arg A=1", "option build-arg after"},
		{"mutation in first phase", "write f x\nexists /a", "outside a rebuild"},
		{"mutation after assertion", "exists /a\nrebuild\nexists /b\nremove f", "after assertions"},
		{"error mixed with assertions", "error boom\nexists /a", "mixed"},
		{"assertion then error", "exists /a\nerror", "mixed"},
		{"error-line alone", "error-line 3", "without error"},
		{"bad error-line", "error\nerror-line 3-2", "error-line wants"},
		{"same in first phase", "same /a", "first phase"},
		{"relative path", "exists a", "not absolute"},
		{"extra argument", "absent /a /b", "want one argument"},
		{"bad mode", "mode /a 0999", "octal"},
		{"mode too large", "mode /a 17777", "octal"},
		{"bad owner", "owner /a root:0", "UID:GID"},
		{"bad layers", "layers many", "layers wants"},
		{"bad json", "cmd [1]", "JSON"},
		{"json trailing text", `cmd ["a"] x`, "JSON"},
		{"bad duration", "healthcheck interval 5", "healthcheck interval"},
		{"bad healthcheck field", "healthcheck period 5s", "unknown healthcheck"},
		{"bad file form", "file /a is x", "unknown file form"},
		{"file equals without text", "file /a equals", "wants TEXT"},
		{"bad quoted text", `file /a equals "unterminated`, "quoted"},
		{"bad regexp", "file /a matches (", "error parsing regexp"},
		{"bad sha", "file /a sha256:xyz", "sha256"},
		{"env without =", "env FOO", "KEY=VALUE"},
		{"build-arg without =", "build-arg FOO", "NAME=VALUE"},
		{"mutation escaping context", "exists /a\nrebuild\nremove ../x", "inside the context"},
		{"absolute mutation", "exists /a\nrebuild\nwrite /x y", "inside the context"},
		{"rebuild with argument", "rebuild now", "no arguments"},
		{"no-cache with argument", "no-cache yes", "no arguments"},
		{"bad expose", "expose 80", "PORT/PROTO"},
		{"symlink without arrow", "symlink /a b", "PATH -> TEXT"},
		{"two errors", "error a\nerror b", "second error"},
		{"dir entries bad name", "dir /a entries x/y", "bad name"},
		{"bad glob", "top-layer lacks [", "bad glob"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseExpect(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("ParseExpect(%q) accepted it", tc.in)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseExpect(%q) = %v, want it to mention %q", tc.in, err, tc.want)
			}
		})
	}
}

// TestParseExpectCorpus parses every expect file of the corpus (no root
// needed), so that a grammar drift shows up even where builds cannot run.
func TestParseExpectCorpus(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(corpusDir, "*", "expect"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no expect files under %s (%v)", corpusDir, err)
	}
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		e, err := ParseExpect(strings.NewReader(string(b)))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for i, ph := range e.Phases {
			if ph.Error == nil && len(ph.Assertions) == 0 {
				t.Errorf("%s: phase %d asserts nothing", f, i+1)
			}
		}
	}
}

// corpusDir is the shared conformance corpus, relative to this package.
const corpusDir = "../../shared/conformance/cases"

// ownCasesDir holds the project's own cases in the corpus format.
const ownCasesDir = "testdata/cases"
