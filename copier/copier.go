package copier

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"

	mode "github.com/tonistiigi/dchapes-mode"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/strata-build/strata/user"
)

// Copy carries out req: it selects the sources in SrcRoot and writes them
// under Dest in DestRoot with BuildKit's COPY/ADD semantics:
//
//   - a source directory's contents are copied into Dest (created);
//   - a source file goes to Dest, or into it when Dest ends in "/" or is an
//     existing directory; with several sources Dest must be a directory;
//   - a symlink named as a source (or matched by a glob) is followed within
//     SrcRoot; symlinks inside copied directories are copied as symlinks;
//     hard links among copied files stay hard links;
//   - a glob matching nothing is skipped, a missing literal source fails;
//   - Dest is resolved inside DestRoot (symlinks followed within it); missing
//     directories are created 0755, owned by the --chown user or root;
//     existing ones keep their owner and mode;
//   - modes, owners (0:0 for the build context) and mtimes come from the
//     source unless --chmod/--chown; ADD extracts local tar archives.
//
// With IndexOut set, the index of the result is written there once the copy
// has succeeded (see Request.IndexOut).
func Copy(ctx context.Context, req Request) error {
	_, err := copyAt(ctx, req, time.Now())
	return err
}

// copyAt is Copy for a copy started at now (tests move it to make fresh
// sources count as settled).
func copyAt(ctx context.Context, req Request, now time.Time) (copyStats, error) {
	return copyWorkers(ctx, req, now, defaultWorkers())
}

// copyWorkers is copyAt with the size of the file-writing pool (0: none,
// everything in this goroutine).
func copyWorkers(ctx context.Context, req Request, now time.Time, workers int) (copyStats, error) {
	op := opName(req)
	w, err := newWriter(req, now)
	if err != nil {
		return copyStats{}, fmt.Errorf("%s: %w", op, err)
	}
	w.workers = workers
	err = w.copy(ctx, req, op)
	w.stopPool()
	if err != nil {
		return w.stats, err
	}
	if req.IndexOut != "" {
		if err := writeIndex(req.IndexOut, w.out); err != nil {
			return w.stats, fmt.Errorf("%s: %w", op, err)
		}
	}
	return w.stats, nil
}

func (w *writer) copy(ctx context.Context, req Request, op string) error {
	if req.IndexOut != "" {
		// A caller bug, better found before copying anything.
		if err := checkIndexDir(req.IndexOut); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	sel, err := newSelector(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	items, err := sel.selectAll(ctx, req)
	if err != nil {
		return fmt.Errorf("%s failed: %w", op, err)
	}
	total := len(items) + len(req.Inline)
	if total == 0 {
		return nil // only globs that matched nothing
	}

	destClean, destIsDir := destPath(req)
	dest, err := securejoin.SecureJoin(w.root, destClean)
	if err != nil {
		return fmt.Errorf("%s: resolving destination %s: %w", op, destClean, err)
	}
	if total > 1 && !destIsDir && !isDir(dest) {
		return fmt.Errorf("When using %s with more than one source file, the destination must be a directory and end with a /", op)
	}
	if destIsDir {
		err = w.mkdirAll(dest)
	} else {
		err = w.mkdirAll(filepath.Dir(dest))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}

	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.place(ctx, sel, req, it, dest); err != nil {
			return fmt.Errorf("%s %s: %w", op, displaySrc(it.name), err)
		}
	}
	for _, in := range req.Inline {
		if err := w.placeInline(in, dest); err != nil {
			return fmt.Errorf("%s <<%s: %w", op, in.Name, err)
		}
	}
	if err := w.finish(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// place copies one selected source to dest (resolved in DestRoot).
func (w *writer) place(ctx context.Context, sel *selector, req Request, it item, dest string) error {
	if req.Add && it.info.Mode().IsRegular() {
		r, closeArchive, ok, err := openArchive(it.abs)
		if err != nil {
			return err
		}
		if ok {
			defer closeArchive()
			return w.extract(ctx, r, dest)
		}
	}
	if req.Parents {
		return w.placeParents(ctx, sel, it, dest)
	}
	if !it.info.IsDir() {
		dst := dest
		if isDir(dest) {
			dst = filepath.Join(dest, path.Base(it.name))
		}
		return w.nonDir(ctx, &w.cmp, it.abs, it.info, dst)
	}
	// A directory: its contents go into dest, whose own metadata stays.
	fi, err := os.Lstat(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := w.mkdirAll(dest); err != nil {
			return err
		}
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("cannot copy a directory to non-directory %s", w.display(dest))
	}
	return w.copyTree(ctx, sel, it, dest, false)
}

// copyTree writes the walk of directory item it to dst. withRoot says
// whether the item's own metadata is copied to dst too.
func (w *writer) copyTree(ctx context.Context, sel *selector, it item, dst string, withRoot bool) error {
	target := func(e entry) string { return filepath.Join(dst, filepath.FromSlash(e.rel)) }
	// dirs counts, per directory being walked, its files still in the pool.
	dirs := []*dirJobs{{}}
	enter := func(e entry) error {
		if e.info.IsDir() {
			dirs = append(dirs, &dirJobs{})
		}
		if e.rel == "." && !withRoot {
			return nil
		}
		if err := w.poolErr(); err != nil {
			return err // the walk stops where a sequential copy would have
		}
		if e.info.IsDir() {
			return w.enterDir(target(e))
		}
		if w.parallel(ctx, e.info) {
			w.pool.submit(e.abs, e.info, target(e), dirs[len(dirs)-1])
			return w.runDeferred(false)
		}
		return w.nonDir(ctx, &w.cmp, e.abs, e.info, target(e))
	}
	leave := func(e entry) error {
		jobs := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		if e.rel == "." && !withRoot {
			return nil
		}
		// The children come first: the directory's mode, default ACL
		// and mtime apply to a complete directory, as sequentially.
		return w.leaveDir(e.abs, e.info, target(e), jobs)
	}
	// Paths are unique within one walk only: whatever comes next (another
	// source, an archive, an inline file) waits for the jobs.
	return w.settle(sel.walk(ctx, it, enter, leave))
}

// placeParents copies it to dest/it.rel, creating the parent directories
// of the source path with the source directories' metadata (--parents).
func (w *writer) placeParents(ctx context.Context, sel *selector, it item, dest string) error {
	comps := splitClean(it.rel)
	if len(comps) == 0 {
		if it.info.IsDir() {
			return w.copyTree(ctx, sel, it, dest, false)
		}
		return w.nonDir(ctx, &w.cmp, it.abs, it.info, filepath.Join(dest, path.Base(it.name)))
	}
	prefix := splitClean(it.name)
	prefix = prefix[:len(prefix)-len(comps)]
	cur := dest
	for i, c := range comps[:len(comps)-1] {
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("cannot copy to non-directory %s", w.display(cur))
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Mkdir(cur, 0o700); err != nil {
			return fmt.Errorf("creating directory %s: %w", w.display(cur), err)
		}
		srcDir := path.Join(append(append([]string{}, prefix...), comps[:i+1]...)...)
		real, _, err := resolveIn(sel.root, srcDir, true)
		if err != nil {
			return fmt.Errorf("resolving %s: %w", srcDir, err)
		}
		abs := filepath.Join(sel.root, real)
		info, err := os.Lstat(abs)
		if err != nil {
			return err
		}
		if err := w.meta(abs, info, cur); err != nil {
			return err
		}
		w.retime = append(w.retime, timedPath{cur, w.clamp(info.ModTime())})
	}
	dst := filepath.Join(dest, filepath.FromSlash(it.rel))
	if it.info.IsDir() {
		return w.copyTree(ctx, sel, it, dst, true)
	}
	return w.nonDir(ctx, &w.cmp, it.abs, it.info, dst)
}

// placeInline writes a heredoc file as COPY would copy a file named in.Name.
func (w *writer) placeInline(in Inline, dest string) error {
	name := path.Base(path.Clean("/" + in.Name))
	if name == "/" {
		return errors.New("inline file has no name")
	}
	dst := dest
	if isDir(dest) {
		dst = filepath.Join(dest, name)
	}
	mode := in.Mode
	if mode == 0 {
		mode = 0o644
	}
	return w.writeData(dst, in.Data, mode)
}

// newWriter validates --chmod and resolves --chown in DestRoot.
func newWriter(req Request, now time.Time) (*writer, error) {
	if req.DestRoot == "" {
		return nil, errors.New("empty destination root")
	}
	w := &writer{
		root:      filepath.Clean(req.DestRoot),
		zeroOwner: req.FromContext,
		reuse:     req.Reuse,
		now:       now,
		links:     map[devIno]string{},
	}
	if req.Reuse != "" {
		w.reuseIndex = req.ReuseIndex
	}
	if req.IndexOut != "" {
		w.out = map[string]fileID{}
	}
	if req.Chmod != "" {
		m, set, err := parseChmod(req.Chmod)
		if err != nil {
			return nil, err
		}
		if set != nil {
			w.chmodSet = set
		} else {
			w.chmod = &m
		}
	}
	if req.Chown != "" {
		users := req.UserRoot
		if users == "" {
			users = req.DestRoot
		}
		o, err := resolveChown(users, req.Chown)
		if err != nil {
			return nil, err
		}
		w.chown = &o
	}
	if req.Epoch != nil {
		t := time.Unix(*req.Epoch, 0)
		w.epoch = &t
	}
	return w, nil
}

// ParseChmod checks a --chmod value: an octal mode up to 07777 or a
// symbolic one as chmod(1) takes (u+x,g-w), applied to each source's mode.
// The error for a bad numeric value carries BuildKit's wording.
func ParseChmod(s string) error {
	_, _, err := parseChmod(s)
	return err
}

func parseChmod(s string) (uint32, *mode.Set, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err == nil && m <= 0o7777 {
		return uint32(m), nil, nil
	}
	numeric := fmt.Errorf("invalid chmod parameter: '%s'. it should be octal string and between 0 and 07777", s)
	if err == nil || s != "" && s[0] >= '0' && s[0] <= '9' {
		return 0, nil, numeric
	}
	set, err := mode.Parse(s)
	if err != nil {
		return 0, nil, fmt.Errorf("invalid chmod parameter: '%s': %v", s, err)
	}
	return 0, &set, nil
}

// applyChmod gives the mode an entry gets: the fixed --chmod, the symbolic
// one applied to the source's mode, or the source's mode.
func (w *writer) applyChmod(src uint32) uint32 {
	switch {
	case w.chmod != nil:
		return *w.chmod
	case w.chmodSet != nil:
		fm := fs.FileMode(src & 0o777)
		if src&0o4000 != 0 {
			fm |= fs.ModeSetuid
		}
		if src&0o2000 != 0 {
			fm |= fs.ModeSetgid
		}
		if src&0o1000 != 0 {
			fm |= fs.ModeSticky
		}
		out := w.chmodSet.Apply(fm)
		m := uint32(out.Perm())
		if out&fs.ModeSetuid != 0 {
			m |= 0o4000
		}
		if out&fs.ModeSetgid != 0 {
			m |= 0o2000
		}
		if out&fs.ModeSticky != 0 {
			m |= 0o1000
		}
		return m
	}
	return src
}

// resolveChown resolves --chown the way BuildKit does: a numeric user
// alone means uid:uid, a user name takes its passwd uid and primary gid, a
// group (name or number) replaces the gid. Unlike BuildKit, unknown names
// are an error rather than a silent 0.
func resolveChown(root, spec string) (owner, error) {
	u, g, _ := strings.Cut(spec, ":")
	var o owner
	if u == "" {
		return o, fmt.Errorf("invalid --chown %q: empty user", spec)
	}
	if u == "root" {
		o = owner{} // BuildKit never looks root up
	} else if n, err := strconv.ParseUint(u, 10, 32); err == nil {
		o = owner{uint32(n), uint32(n)}
	} else {
		usr, err := user.Lookup(root, u)
		if err != nil {
			return o, fmt.Errorf("--chown=%s: %w", spec, err)
		}
		o = owner{usr.UID, usr.GID}
	}
	if g == "" {
		return o, nil
	}
	if g == "root" {
		o.gid = 0
		return o, nil
	}
	if n, err := strconv.ParseUint(g, 10, 32); err == nil {
		o.gid = uint32(n)
		return o, nil
	}
	grp, err := user.Lookup(root, "0:"+g)
	if err != nil {
		return o, fmt.Errorf("--chown=%s: %w", spec, err)
	}
	o.gid = grp.GID
	return o, nil
}

// destPath returns the absolute, clean destination path and whether it was
// written as a directory ("", ".", trailing "/" or "/.").
func destPath(req Request) (string, bool) {
	d := req.Dest
	isDir := d == "" || d == "." || strings.HasSuffix(d, "/") || strings.HasSuffix(d, "/.") || req.Parents
	if !path.IsAbs(d) {
		d = path.Join("/", req.Workdir, d)
	}
	return path.Clean("/" + d), isDir
}

// isDir reports whether p is an existing directory (not via a symlink).
func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

func opName(req Request) string {
	if req.Add {
		return "ADD"
	}
	return "COPY"
}

func displaySrc(name string) string {
	return "/" + name
}
