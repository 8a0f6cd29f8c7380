package integration

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Parsing of the assertion lines of the expect grammar.

var configText = map[string]bool{"workdir": true, "user": true, "stopsignal": true, "author": true}
var configJSON = map[string]bool{"entrypoint": true, "cmd": true, "shell": true, "onbuild": true}

func parseAssertion(kw, rest string) (Assertion, error) {
	var a Assertion
	var err error
	switch {
	case kw == "exists" || kw == "absent" || kw == "same" || kw == "differs" || kw == "volume":
		a.Path, err = onePath(rest)
	case kw == "file":
		err = parseFile(&a, rest)
	case kw == "dir":
		err = parseDir(&a, rest)
	case kw == "symlink":
		var after, arrow string
		if a.Path, after, err = pathToken(rest); err == nil {
			if arrow, after, err = nextToken(after); err != nil || arrow != "->" || after == "" {
				return a, fmt.Errorf("symlink wants PATH -> TEXT")
			}
			a.Text, err = parseText(after[1:])
		}
	case kw == "hardlink":
		var after string
		if a.Path, after, err = pathToken(rest); err == nil {
			a.Path2, err = onePath(after)
		}
	case kw == "mode":
		err = parseMode(&a, rest)
	case kw == "owner":
		err = parseOwner(&a, rest)
	case kw == "layers":
		s := rest
		if strings.HasPrefix(s, "+") {
			a.Sub, s = "+", s[1:]
		}
		if a.Num, err = strconv.ParseInt(s, 10, 32); err != nil || a.Num < 0 || strings.HasPrefix(s, "+") {
			return a, fmt.Errorf("layers wants N or +N, got %q", rest)
		}
	case kw == "top-layer":
		err = parseTopLayer(&a, rest)
	case kw == "env" || kw == "label":
		if a.Text, err = parseText(rest); err == nil {
			if k, _, ok := strings.Cut(a.Text, "="); !ok || k == "" {
				return a, fmt.Errorf("%s wants KEY=VALUE, got %q", kw, rest)
			}
		}
	case kw == "no-env" || kw == "no-label" || kw == "expose":
		a.Text, err = oneToken(rest)
		if err == nil && kw == "expose" && !validPort(a.Text) {
			err = fmt.Errorf("expose wants PORT/PROTO, got %q", a.Text)
		}
	case configText[kw]:
		a.Text, err = parseText(rest)
	case configJSON[kw]:
		a.JSON, err = parseJSON(rest)
	case kw == "exposed-ports" || kw == "volumes":
		a.Names, err = tokens(rest)
		for _, n := range a.Names {
			if err == nil && kw == "exposed-ports" && !validPort(n) {
				err = fmt.Errorf("exposed-ports: %q is not PORT/PROTO", n)
			}
		}
	case kw == "healthcheck":
		err = parseHealthcheck(&a, rest)
	default:
		return a, fmt.Errorf("unknown keyword %q", kw)
	}
	return a, err
}

func parseFile(a *Assertion, rest string) error {
	var after string
	var err error
	if a.Path, after, err = pathToken(rest); err != nil || after == "" {
		return err
	}
	after = strings.TrimLeft(after, " \t")
	sub, arg := cutKeyword(after)
	a.Sub = sub
	switch {
	case sub == "equals" || sub == "contains" || sub == "not-contains" || sub == "matches":
		if after == sub {
			return fmt.Errorf("file %s wants TEXT", sub)
		}
		a.Text, err = parseText(arg)
		if err == nil && sub == "matches" {
			a.Re, err = regexp.Compile(a.Text)
		}
		return err
	case sub == "size":
		if a.Num, err = strconv.ParseInt(arg, 10, 64); err != nil || a.Num < 0 {
			return fmt.Errorf("file size wants N, got %q", arg)
		}
		return nil
	case strings.HasPrefix(sub, "sha256:") && arg == "":
		a.Text, a.Sub = strings.TrimPrefix(sub, "sha256:"), "sha256"
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(a.Text) {
			return fmt.Errorf("bad sha256 digest %q", sub)
		}
		return nil
	}
	return fmt.Errorf("unknown file form %q", sub)
}

func parseDir(a *Assertion, rest string) error {
	var after string
	var err error
	if a.Path, after, err = pathToken(rest); err != nil || after == "" {
		return err
	}
	sub, names := cutKeyword(strings.TrimLeft(after, " \t"))
	if sub != "entries" {
		return fmt.Errorf("unknown dir form %q", sub)
	}
	a.Sub = sub
	a.Names, err = tokens(names)
	for _, n := range a.Names {
		if err == nil && (n == "" || n == "." || n == ".." || strings.Contains(n, "/")) {
			err = fmt.Errorf("dir entries: bad name %q", n)
		}
	}
	if a.Names == nil {
		a.Names = []string{}
	}
	return err
}

func parseMode(a *Assertion, rest string) error {
	var after string
	var err error
	if a.Path, after, err = pathToken(rest); err != nil {
		return err
	}
	m, err := oneToken(after)
	if err != nil {
		return fmt.Errorf("mode wants PATH OCTAL")
	}
	if a.Num, err = strconv.ParseInt(m, 8, 32); err != nil || a.Num > 0o7777 || a.Num < 0 {
		return fmt.Errorf("mode %q is not an octal mode", m)
	}
	return nil
}

func parseOwner(a *Assertion, rest string) error {
	var after string
	var err error
	if a.Path, after, err = pathToken(rest); err != nil {
		return err
	}
	o, err := oneToken(after)
	if err != nil {
		return fmt.Errorf("owner wants PATH UID:GID")
	}
	u, g, ok := strings.Cut(o, ":")
	for _, s := range []string{u, g} {
		if _, err := strconv.ParseUint(s, 10, 32); err != nil && s != "*" {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("owner wants UID:GID (numbers or *), got %q", o)
	}
	a.UID, a.GID = u, g
	return nil
}

func parseTopLayer(a *Assertion, rest string) error {
	sub, arg := cutKeyword(rest)
	if sub != "has" && sub != "lacks" {
		return fmt.Errorf("top-layer wants has ENTRY or lacks GLOB")
	}
	a.Sub = sub
	tok, err := oneToken(arg)
	if err != nil {
		return err
	}
	a.Text = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(tok, "./"), "/"), "/")
	if _, err := path.Match(a.Text, ""); err != nil {
		return fmt.Errorf("top-layer: bad glob %q", tok)
	}
	return nil
}

func parseHealthcheck(a *Assertion, rest string) error {
	sub, arg := cutKeyword(rest)
	a.Sub = sub
	var err error
	switch sub {
	case "test":
		a.JSON, err = parseJSON(arg)
	case "interval", "timeout", "start-period":
		if a.Dur, err = time.ParseDuration(arg); err != nil {
			return fmt.Errorf("healthcheck %s: %w", sub, err)
		}
	case "retries":
		if a.Num, err = strconv.ParseInt(arg, 10, 32); err != nil || a.Num < 0 {
			return fmt.Errorf("healthcheck retries wants N, got %q", arg)
		}
	default:
		return fmt.Errorf("unknown healthcheck field %q", sub)
	}
	return err
}
