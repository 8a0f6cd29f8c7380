package copier

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"
)

// ErrNotFound is wrapped by the error for a source that does not exist in
// SrcRoot or is hidden by .dockerignore. The message, `"/NAME": not found`,
// carries BuildKit's key phrase.
var ErrNotFound = errors.New("not found")

// maxSymlinks bounds symlink expansion while resolving one path (ELOOP).
const maxSymlinks = 255

// item is one selected top-level source.
type item struct {
	name string      // as written (clean, relative to SrcRoot, "" = the root); gives the base name
	real string      // after following symlinks within SrcRoot, relative to it
	abs  string      // host path of real
	info fs.FileInfo // Lstat of abs: never a symlink
	rel  string      // --parents: path under Dest (name relative to the pivot)
}

// entry is one path met while walking a directory item.
type entry struct {
	rel  string // relative to the item ("." for the item itself)
	abs  string
	info fs.FileInfo
}

// selector finds sources in SrcRoot, honouring .dockerignore and --exclude.
type selector struct {
	root    string
	ignore  *patternmatcher.PatternMatcher // paths relative to SrcRoot
	exclude *patternmatcher.PatternMatcher // paths relative to a copied source
}

func newSelector(req Request) (*selector, error) {
	if req.SrcRoot == "" && len(req.Sources) > 0 {
		return nil, errors.New("copy: empty source root")
	}
	s := &selector{root: req.SrcRoot}
	var err error
	if s.ignore, err = newMatcher(req.Ignore); err != nil {
		return nil, fmt.Errorf("parsing .dockerignore patterns: %w", err)
	}
	if s.exclude, err = newMatcher(req.Excludes); err != nil {
		return nil, fmt.Errorf("parsing --exclude patterns: %w", err)
	}
	return s, nil
}

// newMatcher compiles patterns, nil when there are none. A leading "/" is
// dropped: .dockerignore patterns are relative to the context root.
func newMatcher(patterns []string) (*patternmatcher.PatternMatcher, error) {
	var clean []string
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		p = strings.TrimLeft(p, "/")
		if p == "" {
			if neg {
				return nil, errors.New(`illegal exclusion pattern: "!"`)
			}
			continue
		}
		if neg {
			p = "!" + p
		}
		clean = append(clean, p)
	}
	if len(clean) == 0 {
		return nil, nil
	}
	return patternmatcher.New(clean)
}

// matches reports whether pm matches rel or a parent of it.
func matches(pm *patternmatcher.PatternMatcher, rel string) (bool, error) {
	if pm == nil || rel == "" || rel == "." {
		return false, nil
	}
	return pm.MatchesOrParentMatches(rel)
}

// selectAll resolves every source pattern, in order.
func (s *selector) selectAll(ctx context.Context, req Request) ([]item, error) {
	var out []item
	for _, src := range req.Sources {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
			if req.Add {
				return nil, fmt.Errorf("%s: ADD from URL is not supported yet", src)
			}
			return nil, fmt.Errorf("%s: source can't be a URL for COPY", src)
		}
		items, err := s.selectOne(ctx, src, req.Parents)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
	}
	return out, nil
}

// candidate is a path found while matching a glob.
type candidate struct {
	written []string // components as written / matched
	real    string   // real path relative to SrcRoot
}

// selectOne resolves one source: a literal path (symlinks followed within
// SrcRoot, missing = error) or a glob (each component matched with
// filepath.Match, no matches = nothing).
func (s *selector) selectOne(ctx context.Context, src string, parents bool) ([]item, error) {
	var pivot []string
	pattern := src
	if parents {
		if a, b, ok := strings.Cut(src, "/./"); ok {
			pivot, pattern = splitClean(a), b
		}
	}
	comps := append(slices.Clone(pivot), splitClean(pattern)...)
	lit := len(comps)
	for i, c := range comps {
		if hasWildcard(c) {
			lit = i
			break
		}
	}
	name := path.Join(comps...)

	if lit == len(comps) {
		it, ok, err := s.resolveItem(ctx, comps, name)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%q: %w", "/"+name, ErrNotFound)
		}
		if name != "" {
			if excluded, err := matches(s.exclude, path.Base(name)); err != nil || excluded {
				return nil, err
			}
		}
		return []item{s.withParents(it, parents, len(pivot))}, nil
	}

	base, _, err := resolveIn(s.root, path.Join(comps[:lit]...), true)
	if err != nil {
		return nil, nil // a glob under a missing directory matches nothing
	}
	cands := []candidate{{written: slices.Clone(comps[:lit]), real: base}}
	for i, pc := range comps[lit:] {
		last := lit+i == len(comps)-1
		var next []candidate
		for _, c := range cands {
			names, err := readDirNames(filepath.Join(s.root, c.real))
			if err != nil {
				if errors.Is(err, unix.ENOTDIR) {
					continue
				}
				return nil, fmt.Errorf("matching %s: %w", src, err)
			}
			for _, n := range names {
				ok, err := filepath.Match(pc, n)
				if err != nil {
					return nil, fmt.Errorf("matching %s: %w", src, err)
				}
				if !ok {
					continue
				}
				real := path.Join(c.real, n)
				if !last {
					// Like a directory walk: deeper components go through
					// real directories only, never symlinks.
					if fi, err := os.Lstat(filepath.Join(s.root, real)); err != nil || !fi.IsDir() {
						continue
					}
				}
				next = append(next, candidate{written: append(slices.Clone(c.written), n), real: real})
			}
		}
		cands = next
	}

	var out []item
	for _, c := range cands {
		cname := path.Join(c.written...)
		it, ok, err := s.resolveItem(ctx, c.written, cname)
		if err != nil {
			return nil, err
		}
		if !ok {
			if _, err := os.Lstat(filepath.Join(s.root, c.real)); err == nil {
				if hidden, _ := matches(s.ignore, c.real); !hidden {
					// A visible match that leads nowhere (dangling link).
					return nil, fmt.Errorf("%q: %w", "/"+cname, ErrNotFound)
				}
			}
			continue
		}
		excluded, err := matches(s.exclude, path.Join(c.written[lit:]...))
		if err != nil {
			return nil, err
		}
		if !excluded {
			out = append(out, s.withParents(it, parents, len(pivot)))
		}
	}
	return out, nil
}

// withParents fills rel for --parents: the written path below the pivot.
func (s *selector) withParents(it item, parents bool, pivotLen int) item {
	if parents {
		comps := splitClean(it.name)
		if pivotLen <= len(comps) {
			it.rel = path.Join(comps[pivotLen:]...)
		}
	}
	return it
}

// resolveItem follows comps within SrcRoot. ok is false when the path does
// not exist or .dockerignore hides it or a symlink on the way.
func (s *selector) resolveItem(ctx context.Context, comps []string, name string) (item, bool, error) {
	real, links, err := resolveIn(s.root, path.Join(comps...), true)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return item{}, false, nil
		}
		return item{}, false, fmt.Errorf("resolving %q: %w", name, err)
	}
	for _, l := range links {
		if hidden, err := matches(s.ignore, l); err != nil || hidden {
			return item{}, false, err
		}
	}
	abs := filepath.Join(s.root, real)
	info, err := os.Lstat(abs)
	if err != nil {
		return item{}, false, fmt.Errorf("resolving %q: %w", name, err)
	}
	it := item{name: name, real: real, abs: abs, info: info}
	hidden, err := matches(s.ignore, real)
	if err != nil {
		return item{}, false, err
	}
	if hidden {
		// An ignored directory still exists when an exception re-includes
		// something below it.
		if !info.IsDir() || !s.ignore.Exclusions() {
			return item{}, false, nil
		}
		found, err := s.hasVisible(ctx, it)
		if err != nil || !found {
			return item{}, false, err
		}
	}
	return it, true, nil
}

// hasVisible reports whether walking it would yield anything below it.
func (s *selector) hasVisible(ctx context.Context, it item) (bool, error) {
	errFound := errors.New("found")
	err := s.walk(ctx, it, func(e entry) error {
		if e.rel != "." {
			return errFound
		}
		return nil
	}, nil)
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

// resolveIn resolves p inside root like the kernel would with root as "/":
// ".." stops at root, absolute link targets restart at root. It returns the
// real path relative to root ("" = root) and the symlinks it went through.
func resolveIn(root, p string, followLast bool) (string, []string, error) {
	todo := strings.Split(p, "/")
	cur := ""
	var links []string
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			if cur == "." || cur == "/" {
				cur = ""
			}
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", links, err
		}
		more := slices.ContainsFunc(todo, func(s string) bool { return s != "" && s != "." })
		if fi.Mode()&fs.ModeSymlink != 0 && (more || followLast) {
			if len(links) >= maxSymlinks {
				return "", links, &fs.PathError{Op: "resolve", Path: p, Err: unix.ELOOP}
			}
			target, err := os.Readlink(filepath.Join(root, next))
			if err != nil {
				return "", links, err
			}
			links = append(links, next)
			if strings.HasPrefix(target, "/") {
				cur = ""
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		}
		if more && !fi.IsDir() {
			return "", links, &fs.PathError{Op: "resolve", Path: p, Err: unix.ENOTDIR}
		}
		cur = next
	}
	return cur, links, nil
}

// splitClean cleans p as a path under "/" ("../" clamped) and splits it.
func splitClean(p string) []string {
	c := path.Clean("/" + p)
	if c == "/" {
		return nil
	}
	return strings.Split(c[1:], "/")
}

// hasWildcard reports whether a path component holds glob syntax; a
// backslash escapes the next character.
func hasWildcard(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}
