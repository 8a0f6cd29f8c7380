package source

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Kind says what an ADD source is.
type Kind int

const (
	KindLocal Kind = iota // a path in the build context (or stage/image)
	KindURL               // an http(s) URL to download
	KindGit               // a Git repository
)

func (k Kind) String() string {
	switch k {
	case KindURL:
		return "url"
	case KindGit:
		return "git"
	}
	return "local"
}

// Classify tells what an ADD source is, with the rules of BuildKit's
// Dockerfile frontend: ssh:// and git:// URLs and scp-like
// "user@host:path" are Git; http(s) URLs are Git when their path ends in
// ".git" and downloads otherwise; anything else is local. file:// is never
// classified as Git here (BuildKit does not either): a caller that knows a
// file:// source is a repository passes GitOptions.AllowFile itself.
func Classify(src string) Kind {
	if scheme, ok := urlScheme(src); ok {
		switch scheme {
		case "ssh", "git":
			return KindGit
		case "http", "https":
			u, err := url.Parse(src)
			if err == nil && strings.HasSuffix(u.Path, ".git") {
				return KindGit
			}
			return KindURL
		}
		return KindLocal
	}
	if scpLike.MatchString(src) {
		return KindGit
	}
	return KindLocal
}

// GitRef is a parsed Git source in BuildKit's syntax:
//
//	REMOTE[?QUERY][#REF[:SUBDIR]]
//
// REMOTE is an http(s)://, ssh://, git:// (or, when allowed, file://) URL
// or scp-like user@host:path. QUERY may carry ref=, tag=, branch=,
// subdir=, checksum= (or commit=), keep-git-dir=, submodules= and mtime=.
type GitRef struct {
	Remote   string // what git is given: the URL without query and fragment
	Ref      string // branch, tag, full ref name or full commit sha; "" = remote HEAD
	Subdir   string // cleaned, relative, "" for the root
	Checksum string // from the query: the commit (prefix) the ref must resolve to
	// KeepGitDir and Submodules are set only when the query says so.
	KeepGitDir *bool
	Submodules *bool
}

var (
	schemeRE = regexp.MustCompile(`^([a-zA-Z0-9]+)://`)
	// scpLike is git's scp-like syntax as BuildKit accepts it:
	// user@host:path[?query][#fragment].
	scpLike = regexp.MustCompile(`^([a-zA-Z0-9_-]+)@([a-zA-Z0-9.-]+):(.*?)(?:\?(.*?))?(?:#(.*))?$`)
)

func urlScheme(s string) (string, bool) {
	m := schemeRE.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	return strings.ToLower(m[1]), true
}

// ParseGitRef parses s. allowFile accepts file:// remotes (a local
// repository; git is told to allow the file protocol only then).
func ParseGitRef(s string, allowFile bool) (GitRef, error) {
	var (
		g        GitRef
		query    url.Values
		fragment string
	)
	if scheme, ok := urlScheme(s); ok {
		switch scheme {
		case "http", "https", "ssh", "git":
		case "file":
			if !allowFile {
				return GitRef{}, fmt.Errorf("git source %q: file:// repositories are not allowed here", redactedRemote(s))
			}
		default:
			return GitRef{}, fmt.Errorf("git source %q: unsupported protocol %q", redactedRemote(s), scheme)
		}
		u, err := url.Parse(s)
		if err != nil {
			return GitRef{}, fmt.Errorf("git source: %w", urlParseError(err))
		}
		if scheme != "file" && u.Host == "" {
			return GitRef{}, fmt.Errorf("git source %q: no host", u.Redacted())
		}
		if u.Path == "" || u.Path == "/" {
			return GitRef{}, fmt.Errorf("git source %q: no repository path", u.Redacted())
		}
		query = u.Query()
		fragment = u.Fragment
		u.RawQuery, u.Fragment, u.RawFragment, u.ForceQuery = "", "", "", false
		g.Remote = u.String()
	} else if m := scpLike.FindStringSubmatch(s); m != nil {
		if m[3] == "" {
			return GitRef{}, fmt.Errorf("git source %q: no repository path", s)
		}
		g.Remote = m[1] + "@" + m[2] + ":" + m[3]
		if m[4] != "" {
			q, err := url.ParseQuery(m[4])
			if err != nil {
				return GitRef{}, fmt.Errorf("git source %q: %w", s, err)
			}
			query = q
		}
		fragment = m[5]
	} else {
		return GitRef{}, fmt.Errorf("git source %q: not a git URL", s)
	}
	// Anything git could take for an option is refused outright.
	if strings.HasPrefix(g.Remote, "-") {
		return GitRef{}, fmt.Errorf("git source %q: invalid remote", s)
	}
	if fragment != "" {
		ref, sub, _ := strings.Cut(fragment, ":")
		g.Ref = ref
		g.Subdir = cleanSubdir(sub)
	}
	if err := g.applyQuery(query); err != nil {
		return GitRef{}, fmt.Errorf("git source %q: %w", redactedRemote(s), err)
	}
	if g.Ref == "HEAD" {
		g.Ref = ""
	}
	if g.Ref != "" {
		if err := validateRefName(g.Ref); err != nil {
			return GitRef{}, fmt.Errorf("git source %q: %w", redactedRemote(s), err)
		}
	}
	return g, nil
}

func cleanSubdir(s string) string {
	return strings.TrimPrefix(path.Join("/", s), "/")
}

// applyQuery merges BuildKit's query options; a value conflicting with the
// fragment is an error, as there.
func (g *GitRef) applyQuery(q url.Values) error {
	var tag, branch string
	for k, vs := range q {
		if len(vs) > 1 {
			return fmt.Errorf("query %q has multiple values", k)
		}
		v := ""
		if len(vs) == 1 {
			v = vs[0]
		}
		switch k {
		case "ref":
			if v == "" {
				return fmt.Errorf("query %q has no value", k)
			}
			if g.Ref != "" && g.Ref != v {
				return fmt.Errorf("ref conflicts: %q vs %q", g.Ref, v)
			}
			g.Ref = v
		case "tag", "branch":
			if v == "" {
				return fmt.Errorf("query %q has no value", k)
			}
			if k == "tag" {
				tag = v
			} else {
				branch = v
			}
		case "subdir":
			sub := cleanSubdir(v)
			if g.Subdir != "" && g.Subdir != sub {
				return fmt.Errorf("subdir conflicts: %q vs %q", g.Subdir, sub)
			}
			g.Subdir = sub
		case "checksum", "commit":
			if v == "" {
				return fmt.Errorf("query %q has no value", k)
			}
			g.Checksum = v
		case "keep-git-dir", "submodules":
			b := true // a bare key means true
			if v != "" {
				var err error
				if b, err = strconv.ParseBool(v); err != nil {
					return fmt.Errorf("invalid %s value %q", k, v)
				}
			}
			if k == "keep-git-dir" {
				g.KeepGitDir = &b
			} else {
				g.Submodules = &b
			}
		case "mtime":
			// Trees always get the commit time (deterministic); BuildKit's
			// "checkout" (wall clock) is accepted and given it too.
			if v != "commit" && v != "checkout" {
				return fmt.Errorf("invalid mtime value %q (must be \"checkout\" or \"commit\")", v)
			}
		default:
			return fmt.Errorf("unexpected query %q", k)
		}
	}
	if tag != "" && branch != "" {
		return errors.New("branch conflicts with tag")
	}
	for _, x := range []struct{ name, prefix string }{{tag, "refs/tags/"}, {branch, "refs/heads/"}} {
		if x.name == "" {
			continue
		}
		full := x.prefix + strings.TrimPrefix(x.name, x.prefix)
		if g.Ref != "" && g.Ref != full {
			return fmt.Errorf("ref conflicts: %q vs %q", g.Ref, full)
		}
		g.Ref = full
	}
	return nil
}

// validateRefName refuses names git would read as options or that break
// git's ref-name rules (which also keeps them clear of ls-remote globs).
func validateRefName(ref string) error {
	bad := strings.HasPrefix(ref, "-") || strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") ||
		strings.HasSuffix(ref, ".") || strings.HasSuffix(ref, ".lock") ||
		strings.Contains(ref, "..") || strings.Contains(ref, "@{") || strings.Contains(ref, "//")
	for _, r := range ref {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("invalid git ref %q", ref)
	}
	return nil
}

// isCommitSHA reports a full SHA-1 or SHA-256 object name.
func isCommitSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	return isLowerHex(s)
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// redactedRemote hides a URL password for messages; other forms have none.
func redactedRemote(s string) string {
	if _, ok := urlScheme(s); ok {
		if u, err := url.Parse(s); err == nil {
			return u.Redacted()
		}
	}
	return s
}

// urlParseError drops the URL (which may hold a password) from a
// url.Parse error, keeping what was wrong with it.
func urlParseError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("invalid URL: %w", ue.Err)
	}
	return err
}
