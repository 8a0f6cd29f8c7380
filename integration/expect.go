// Package integration holds the end-to-end tests of the strata binary: builds
// against a real registry, read back with skopeo and umoci, and the runner of
// the shared Dockerfile conformance corpus. This file is the parser of the
// corpus' `expect` files (grammar in /work/shared/conformance/README.md).
package integration

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Expect is a parsed expect file: one or more phases separated by "rebuild".
type Expect struct {
	Phases []*Phase
}

// Phase is one build of a case and what must hold afterwards.
type Phase struct {
	Line       int        // line of its "rebuild" (0 for the first phase)
	BuildArgs  []BuildArg // build-arg lines of this phase only
	Target     *string    // nil: carried over from the previous phase
	Dockerfile *string    // nil: carried over from the previous phase
	NoCache    bool
	Mutations  []Mutation
	Error      *ErrorExpect // non-nil: the build must fail
	Assertions []Assertion
}

// BuildArg is one `build-arg NAME=VALUE` option.
type BuildArg struct{ Name, Value string }

// Mutation changes the scratch context before a rebuild.
type Mutation struct {
	Line      int
	Op        string // write, remove, rename
	Path, New string // New: rename target
	Text      string // write content
}

// ErrorExpect is the `error` / `error-line` outcome.
type ErrorExpect struct {
	Line             int
	Text             string // empty: any failure
	LineFrom, LineTo int    // 0: no error-line
}

// Assertion is one check of the built image. Which fields are set depends
// on Kind (the keyword) and Sub (the form, e.g. "equals" for file).
type Assertion struct {
	Line  int
	Raw   string
	Kind  string
	Sub   string
	Path  string
	Path2 string
	Text  string
	Names []string // dir entries, exposed-ports, volumes
	Num   int64    // size, mode, layers, retries
	UID   string   // owner, "*" = any
	GID   string
	JSON  []string // entrypoint, cmd, shell, onbuild, healthcheck test (nil = null/[])
	Dur   time.Duration
	Re    *regexp.Regexp
}

func (a Assertion) String() string { return fmt.Sprintf("expect:%d: %s", a.Line, a.Raw) }

// ParseExpect reads an expect file and validates it against the grammar.
func ParseExpect(r io.Reader) (*Expect, error) {
	p := &expectParser{exp: &Expect{Phases: []*Phase{{}}}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.Trim(sc.Text(), " \t\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := p.line(n, line); err != nil {
			return nil, fmt.Errorf("expect:%d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := p.endPhase(); err != nil {
		return nil, err
	}
	return p.exp, nil
}

type expectParser struct {
	exp   *Expect
	stage int // 0 options, 1 mutations, 2 outcome/assertions
}

func (p *expectParser) cur() *Phase { return p.exp.Phases[len(p.exp.Phases)-1] }

func (p *expectParser) endPhase() error {
	ph := p.cur()
	where := fmt.Sprintf("expect: phase %d", len(p.exp.Phases))
	if ph.Error != nil && ph.Error.Line == 0 {
		return fmt.Errorf("%s: error-line without error", where)
	}
	if ph.Error != nil && len(ph.Assertions) > 0 {
		return fmt.Errorf("%s: error mixed with assertions (line %d)", where, ph.Assertions[0].Line)
	}
	return nil
}

func (p *expectParser) line(n int, line string) error {
	kw, rest := cutKeyword(line)
	ph := p.cur()
	switch kw {
	case "rebuild":
		if rest != "" {
			return fmt.Errorf("rebuild takes no arguments")
		}
		if err := p.endPhase(); err != nil {
			return err
		}
		p.exp.Phases = append(p.exp.Phases, &Phase{Line: n})
		p.stage = 0
		return nil
	case "build-arg", "target", "dockerfile", "no-cache":
		if p.stage > 0 {
			return fmt.Errorf("option %s after mutations or assertions", kw)
		}
		return parseOption(ph, kw, rest)
	case "write", "remove", "rename":
		if len(p.exp.Phases) == 1 {
			return fmt.Errorf("mutation %s outside a rebuild phase", kw)
		}
		if p.stage > 1 {
			return fmt.Errorf("mutation %s after assertions", kw)
		}
		p.stage = 1
		m, err := parseMutation(kw, rest)
		m.Line = n
		ph.Mutations = append(ph.Mutations, m)
		return err
	case "error", "error-line":
		p.stage = 2
		return parseOutcome(ph, n, kw, rest)
	}
	p.stage = 2
	a, err := parseAssertion(kw, rest)
	if err != nil {
		return err
	}
	if (kw == "same" || kw == "differs") && len(p.exp.Phases) == 1 {
		return fmt.Errorf("%s in the first phase (nothing to compare with)", kw)
	}
	a.Line, a.Raw, a.Kind = n, line, kw
	ph.Assertions = append(ph.Assertions, a)
	return nil
}

func parseOption(ph *Phase, kw, rest string) error {
	switch kw {
	case "build-arg":
		name, val, ok := strings.Cut(rest, "=")
		if !ok || !validArgName(name) {
			return fmt.Errorf("build-arg wants NAME=VALUE, got %q", rest)
		}
		v, err := parseText(val)
		if err != nil {
			return err
		}
		ph.BuildArgs = append(ph.BuildArgs, BuildArg{name, v})
	case "target", "dockerfile":
		tok, err := oneToken(rest)
		if err != nil {
			return fmt.Errorf("%s: %w", kw, err)
		}
		if kw == "target" {
			ph.Target = &tok
		} else {
			if _, err := ctxPath(tok); err != nil {
				return err
			}
			ph.Dockerfile = &tok
		}
	case "no-cache":
		if rest != "" {
			return fmt.Errorf("no-cache takes no arguments")
		}
		ph.NoCache = true
	}
	return nil
}

func parseMutation(kw, rest string) (Mutation, error) {
	m := Mutation{Op: kw}
	p, after, err := nextToken(rest)
	if err != nil {
		return m, err
	}
	if m.Path, err = ctxPath(p); err != nil {
		return m, err
	}
	switch kw {
	case "write":
		if after == "" {
			return m, fmt.Errorf("write wants CTXPATH TEXT")
		}
		m.Text, err = parseText(after[1:])
		return m, err
	case "remove":
		if strings.TrimSpace(after) != "" {
			return m, fmt.Errorf("remove takes one CTXPATH")
		}
	case "rename":
		n, err := oneToken(after)
		if err != nil {
			return m, fmt.Errorf("rename wants OLD NEW: %w", err)
		}
		if m.New, err = ctxPath(n); err != nil {
			return m, err
		}
	}
	return m, nil
}

func parseOutcome(ph *Phase, n int, kw, rest string) error {
	if ph.Error == nil {
		ph.Error = &ErrorExpect{}
	}
	e := ph.Error
	if kw == "error" {
		if e.Line != 0 {
			return fmt.Errorf("second error line (first at %d)", e.Line)
		}
		e.Line = n
		t, err := parseText(rest)
		if err != nil {
			return err
		}
		e.Text = t
		return nil
	}
	if e.LineFrom != 0 {
		return fmt.Errorf("second error-line")
	}
	from, to, isRange := strings.Cut(rest, "-")
	a, err1 := strconv.Atoi(from)
	b, err2 := a, error(nil)
	if isRange {
		b, err2 = strconv.Atoi(to)
	}
	if err1 != nil || err2 != nil || a < 1 || b < a {
		return fmt.Errorf("error-line wants N or N-M, got %q", rest)
	}
	e.LineFrom, e.LineTo = a, b
	return nil
}
