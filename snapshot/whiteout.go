package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	opaqueXattr     = "trusted.overlay.opaque"
	userOpaqueXattr = "user.overlay.opaque"
	whiteoutXattr   = "trusted.overlay.whiteout"
	userWhiteoutXa  = "user.overlay.whiteout"
)

// whiteout handles an OCI whiteout entry (rel is its clean name) in the
// overlay and flatten modes. Per the OCI spec a whiteout only hides lower
// layers' content, never entries of its own layer.
func (a *applier) whiteout(rel string) error {
	parentRel, base := split(rel)
	if base == whOpaque {
		return a.opaque(parentRel)
	}
	if strings.HasPrefix(base, whMeta) {
		return nil // other AUFS bookkeeping (.wh..wh.plnk, ...)
	}
	victim := strings.TrimPrefix(base, whPrefix)
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("bad whiteout name %q", base)
	}
	vrel := path.Join(parentRel, victim)
	parent, err := a.parent(parentRel, a.opts.Mode == ApplyOverlay)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // flatten: nothing there to delete
	}
	if err != nil {
		return err
	}
	target := filepath.Join(parent, victim)
	if _, mine := a.written[vrel]; mine {
		// This layer's own entry stays; if it is a directory, whatever
		// lower layers had inside it goes.
		if fi, err := os.Lstat(target); err == nil && fi.IsDir() {
			return a.hideLower(target, vrel)
		}
		return nil
	}
	if a.opts.Mode == ApplyOverlay {
		if _, _, err := a.clear(target, false); err != nil {
			return fmt.Errorf("replacing %s with a whiteout: %w", vrel, err)
		}
		if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("creating whiteout %s: %w", vrel, err)
		}
		return nil
	}
	fi, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("whiteout %s: %w", vrel, err)
	}
	if fi.IsDir() || fi.Mode()&fs.ModeSymlink != 0 {
		clear(a.parents)
	}
	if err := os.RemoveAll(target); err != nil {
		return fmt.Errorf("whiteout %s: %w", vrel, err)
	}
	return nil
}

// opaque handles .wh..wh..opq in directory rel.
func (a *applier) opaque(rel string) error {
	dir, err := a.parent(rel, a.opts.Mode == ApplyOverlay)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return a.hideLower(dir, rel)
}

// hideLower makes directory dir (clean name rel) show only this layer's
// entries: in overlay mode by marking it opaque, in flatten mode by
// deleting every entry below it that this layer did not write.
func (a *applier) hideLower(dir, rel string) error {
	if a.opts.Mode == ApplyOverlay {
		return setOpaque(dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("opaque directory %s: %w", rel, err)
	}
	for _, e := range ents {
		crel := path.Join(rel, e.Name())
		cp := filepath.Join(dir, e.Name())
		if _, mine := a.written[crel]; mine {
			if e.IsDir() {
				if err := a.hideLower(cp, crel); err != nil {
					return err
				}
			}
			continue
		}
		if e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
			clear(a.parents)
		}
		if err := os.RemoveAll(cp); err != nil {
			return fmt.Errorf("opaque directory %s: %w", rel, err)
		}
	}
	return nil
}

func setOpaque(dir string) error {
	if err := unix.Lsetxattr(dir, opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("marking %s opaque: %w", dir, err)
	}
	return nil
}
