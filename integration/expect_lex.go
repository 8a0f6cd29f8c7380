package integration

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Lexical pieces of the expect grammar: keywords, TEXT, tokens, PATHs.

// cutKeyword splits "KW rest": rest is what follows the first blank.
func cutKeyword(line string) (string, string) {
	i := strings.IndexAny(line, " \t")
	if i < 0 {
		return line, ""
	}
	return line[:i], line[i+1:]
}

// parseText reads TEXT: a Go quoted string spanning the rest of the line,
// or literal text with trailing blanks removed.
func parseText(s string) (string, error) {
	t := strings.TrimRight(s, " \t\r")
	if strings.HasPrefix(t, `"`) {
		u, err := strconv.Unquote(t)
		if err != nil {
			return "", fmt.Errorf("bad quoted text %s: %v", t, err)
		}
		return u, nil
	}
	return t, nil
}

// nextToken reads one bare or Go-quoted token after optional blanks and
// returns the rest of the line as it is (starting at the separator).
func nextToken(s string) (tok, rest string, err error) {
	s = strings.TrimLeft(s, " \t")
	if s == "" {
		return "", "", fmt.Errorf("missing argument")
	}
	if s[0] != '"' {
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			return s, "", nil
		}
		return s[:i], s[i:], nil
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			u, err := strconv.Unquote(s[:i+1])
			if err != nil {
				return "", "", fmt.Errorf("bad quoted token %s: %v", s[:i+1], err)
			}
			if i+1 < len(s) && s[i+1] != ' ' && s[i+1] != '\t' {
				return "", "", fmt.Errorf("text after quoted token %s", s[:i+1])
			}
			return u, s[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("unterminated quoted token %s", s)
}

func tokens(s string) ([]string, error) {
	var out []string
	for strings.TrimSpace(s) != "" {
		t, rest, err := nextToken(s)
		if err != nil {
			return nil, err
		}
		out, s = append(out, t), rest
	}
	return out, nil
}

func oneToken(s string) (string, error) {
	t, err := tokens(s)
	if err != nil {
		return "", err
	}
	if len(t) != 1 {
		return "", fmt.Errorf("want one argument, got %d in %q", len(t), s)
	}
	return t[0], nil
}

func pathToken(s string) (string, string, error) {
	t, rest, err := nextToken(s)
	if err == nil && !strings.HasPrefix(t, "/") {
		err = fmt.Errorf("PATH %q is not absolute", t)
	}
	return t, rest, err
}

func onePath(s string) (string, error) {
	t, err := oneToken(s)
	if err == nil && !strings.HasPrefix(t, "/") {
		err = fmt.Errorf("PATH %q is not absolute", t)
	}
	return t, err
}

func ctxPath(p string) (string, error) {
	c := path.Clean(p)
	if p == "" || path.IsAbs(p) || c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("context path %q must be relative and inside the context", p)
	}
	return c, nil
}

func parseJSON(s string) ([]string, error) {
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("want a JSON array of strings or null, got %q: %v", s, err)
	}
	return v, nil
}

var argNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func validArgName(s string) bool { return argNameRe.MatchString(s) }

var portRe = regexp.MustCompile(`^[0-9]+/(tcp|udp|sctp)$`)

func validPort(s string) bool { return portRe.MatchString(s) }
