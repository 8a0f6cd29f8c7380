package dockerfile

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Dockerfile is a parsed Dockerfile. It is immutable: Plan may be called
// any number of times, concurrently, with different Options.
type Dockerfile struct {
	file   string
	ast    *parser.Node
	escape rune
}

// Parse parses data, the content of the Dockerfile named file (used in
// error messages). Syntax errors are returned as *Error.
func Parse(file string, data []byte) (*Dockerfile, error) {
	res, err := parseAST(file, data)
	if err != nil {
		return nil, err
	}
	d := &Dockerfile{file: file, ast: res.AST, escape: res.EscapeToken}
	// Parse the instructions once now so that instruction errors surface
	// from Parse; Plan parses again to get commands it may mutate.
	if _, err := d.instructions(); err != nil {
		return nil, err
	}
	return d, nil
}

// parseAST checks the file is not empty and names a frontend we implement,
// then parses it into buildkit's AST. Errors are *Error.
func parseAST(file string, data []byte) (*parser.Result, error) {
	if len(data) == 0 {
		return nil, &Error{Loc: Location{File: file}, Msg: "the Dockerfile cannot be empty"}
	}
	if err := checkSyntaxDirective(file, data); err != nil {
		return nil, err
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, toError(file, Location{File: file}, err)
	}
	return res, nil
}

// File is the name the Dockerfile was parsed under.
func (d *Dockerfile) File() string { return d.file }

type parsedFile struct {
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
}

// instructions turns the AST into fresh typed instructions. Expansion
// mutates commands in place, so every Plan needs its own copy.
func (d *Dockerfile) instructions() (*parsedFile, error) {
	stages, metaArgs, err := instructions.Parse(d.ast, noLinter())
	if err != nil {
		return nil, toError(d.file, Location{File: d.file}, err)
	}
	if len(stages) == 0 {
		return nil, &Error{Loc: Location{File: d.file}, Msg: "dockerfile contains no stages to build"}
	}
	return &parsedFile{stages: stages, metaArgs: metaArgs}, nil
}

// noLinter returns a linter that reports nothing. instructions.Parse
// dereferences its linter when a comment carries a check directive, so nil
// is not safe.
func noLinter() *linter.Linter {
	return linter.New(&linter.Config{SkipAll: true})
}

// syntaxRef matches the frontends we implement: docker/dockerfile:1 and its
// minor/patch versions (optionally -labs), latest, or no tag.
var syntaxRef = regexp.MustCompile(`^(?:docker\.io/)?docker/dockerfile(?::(?:latest|1(?:\.\d+){0,2}(?:-labs)?))?(?:@sha256:[0-9a-f]{64})?$`)

func checkSyntaxDirective(file string, data []byte) error {
	syntax, _, loc, ok := parser.ParseDirective("syntax", data)
	if !ok || syntaxRef.MatchString(syntax) {
		return nil
	}
	return &Error{
		Loc: locationOf(file, loc),
		Msg: fmt.Sprintf("unsupported syntax directive %q: only docker/dockerfile:1 is implemented", syntax),
	}
}

// locationOf converts buildkit source ranges into a Location.
func locationOf(file string, ranges []parser.Range) Location {
	loc := Location{File: file}
	for _, r := range ranges {
		if loc.Line == 0 || (r.Start.Line > 0 && r.Start.Line < loc.Line) {
			loc.Line = r.Start.Line
		}
		if r.End.Line > loc.EndLine {
			loc.EndLine = r.End.Line
		}
	}
	if loc.EndLine < loc.Line {
		loc.EndLine = loc.Line
	}
	return loc
}

var parseErrPrefix = regexp.MustCompile(`^dockerfile parse error on line \d+: `)

// toError converts err into an *Error. An *Error passes through; a
// buildkit error carrying a source location uses that location, anything
// else gets def.
func toError(file string, def Location, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	loc := def
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 {
		if l := locationOf(file, le.Locations[0]); l.Line > 0 {
			loc = l
		}
	}
	msg := parseErrPrefix.ReplaceAllString(err.Error(), "")
	return &Error{Loc: loc, Msg: strings.TrimSpace(msg), Err: err}
}

// Unwrap gives the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }
