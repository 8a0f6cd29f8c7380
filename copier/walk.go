package copier

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
)

// walk visits the directory item it in lexical order: enter before a
// directory's children, leave after them. .dockerignore'd and --exclude'd
// entries are skipped; an excluded directory still shows (just before its
// first shown descendant) when an exception re-includes something inside.
func (s *selector) walk(ctx context.Context, it item, enter, leave func(entry) error) error {
	w := &walker{s: s, it: it, enter: enter, leave: leave}
	root := entry{rel: ".", abs: it.abs, info: it.info}
	if err := enter(root); err != nil {
		return err
	}
	if err := w.dir(ctx, root); err != nil {
		return err
	}
	if leave != nil {
		return leave(root)
	}
	return nil
}

type walker struct {
	s            *selector
	it           item
	enter, leave func(entry) error
	pending      []*pendingDir
}

type pendingDir struct {
	e       entry
	entered bool
}

// flush enters the excluded ancestors waiting for a shown descendant.
func (w *walker) flush() error {
	for _, p := range w.pending {
		if !p.entered {
			if err := w.enter(p.e); err != nil {
				return err
			}
			p.entered = true
		}
	}
	return nil
}

func (w *walker) dir(ctx context.Context, d entry) error {
	names, err := readDirNames(d.abs)
	if err != nil {
		return fmt.Errorf("reading directory %s: %w", d.abs, err)
	}
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := entry{rel: path.Join(d.rel, n), abs: filepath.Join(d.abs, n)}
		if e.info, err = os.Lstat(e.abs); err != nil {
			return fmt.Errorf("reading %s: %w", e.abs, err)
		}
		ig, err := matches(w.s.ignore, path.Join(w.it.real, e.rel))
		if err != nil {
			return err
		}
		ex, err := matches(w.s.exclude, e.rel)
		if err != nil {
			return err
		}
		if !e.info.IsDir() {
			if ig || ex {
				continue
			}
			if err := w.flush(); err != nil {
				return err
			}
			if err := w.enter(e); err != nil {
				return err
			}
			continue
		}
		if !ig && !ex {
			if err := w.flush(); err != nil {
				return err
			}
			if err := w.enter(e); err != nil {
				return err
			}
			if err := w.dir(ctx, e); err != nil {
				return err
			}
			if w.leave != nil {
				if err := w.leave(e); err != nil {
					return err
				}
			}
			continue
		}
		if (ig && !w.s.ignore.Exclusions()) || (ex && !w.s.exclude.Exclusions()) {
			continue // nothing below can come back
		}
		p := &pendingDir{e: e}
		w.pending = append(w.pending, p)
		err = w.dir(ctx, e)
		w.pending = w.pending[:len(w.pending)-1]
		if err != nil {
			return err
		}
		if p.entered && w.leave != nil {
			if err := w.leave(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// readDirNames lists a directory's names, sorted.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}
