package snapshot

// A frozen copy of the sequential Diff that every recorded layer was made
// with. Diff must produce exactly its bytes for every tree (diffIDs of
// already-recorded layers depend on it), so the equivalence tests use it as
// the oracle. Do not "improve" this file: change it only together with a
// deliberate format change that invalidates recorded diffIDs.

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func oracleDiff(ctx context.Context, upper string, w io.Writer, opts DiffOptions) (empty bool, err error) {
	d := &oracleDiffer{
		tw:    tar.NewWriter(w),
		opts:  opts,
		buf:   make([]byte, 1<<20),
		links: map[inode]string{},
		names: make([]byte, 1024),
	}
	upper = filepath.Clean(upper)
	err = filepath.WalkDir(upper, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == upper {
			return nil
		}
		return d.entry(p, filepath.ToSlash(strings.TrimPrefix(p[len(upper):], "/")))
	})
	if err != nil {
		return false, fmt.Errorf("diffing %s: %w", upper, err)
	}
	if err := d.tw.Close(); err != nil {
		return false, fmt.Errorf("diffing %s: %w", upper, err)
	}
	return d.n == 0, nil
}

type oracleXattr struct{ name, value string }

type oracleDiffer struct {
	tw    *tar.Writer
	opts  DiffOptions
	buf   []byte
	links map[inode]string
	names []byte
	n     int
}

func (d *oracleDiffer) entry(p, rel string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	xattrs, err := d.xattrs(p)
	if err != nil {
		return err
	}
	mtime := d.clamp(time.Unix(st.Mtim.Sec, st.Mtim.Nsec))
	kind := st.Mode & unix.S_IFMT
	if kind == unix.S_IFCHR && st.Rdev == 0 || kind == unix.S_IFREG && st.Size == 0 && oracleHasWhiteout(xattrs) {
		dir, base := path.Split(rel)
		return d.write(&tar.Header{Typeflag: tar.TypeReg, Name: dir + ".wh." + base, ModTime: mtime}, nil)
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: mtime,
	}
	for _, x := range xattrs {
		if strings.HasPrefix(x.name, "trusted.overlay.") || strings.HasPrefix(x.name, "user.overlay.") || x.name == "security.selinux" {
			continue
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+x.name] = x.value
	}
	switch kind {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		if err := d.write(hdr, nil); err != nil {
			return err
		}
		if oracleIsOpaque(xattrs) {
			return d.write(&tar.Header{Typeflag: tar.TypeReg, Name: rel + "/.wh..wh..opq", ModTime: mtime}, nil)
		}
		return nil
	case unix.S_IFREG:
		if st.Nlink > 1 {
			key := inode{dev: st.Dev, ino: st.Ino}
			if first, ok := d.links[key]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return d.write(hdr, nil)
			}
			d.links[key] = rel
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		return d.write(hdr, func() error { return d.copyFile(p, rel, st.Size) })
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("reading link %s: %w", rel, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if kind == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil
	}
	return d.write(hdr, nil)
}

func (d *oracleDiffer) write(hdr *tar.Header, body func() error) error {
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing tar header for %s: %w", hdr.Name, err)
	}
	d.n++
	if body != nil {
		return body()
	}
	return nil
}

func (d *oracleDiffer) copyFile(p, rel string, size int64) error {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", rel, err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(struct{ io.Writer }{d.tw}, struct{ io.Reader }{io.LimitReader(f, size)}, d.buf)
	if err != nil {
		return fmt.Errorf("copying %s: %w", rel, err)
	}
	if n != size {
		return fmt.Errorf("copying %s: file shrank from %d to %d bytes", rel, size, n)
	}
	return nil
}

func (d *oracleDiffer) clamp(t time.Time) time.Time {
	t = t.Truncate(time.Second)
	if e := d.opts.Epoch; e != nil && t.After(*e) {
		return *e
	}
	return t
}

func (d *oracleDiffer) xattrs(p string) ([]oracleXattr, error) {
	n, err := unix.Llistxattr(p, d.names)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			d.names = make([]byte, max(n*2, 1024))
			n, err = unix.Llistxattr(p, d.names)
		}
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	var out []oracleXattr
	for names := d.names[:n]; len(names) > 0; {
		i := 0
		for i < len(names) && names[i] != 0 {
			i++
		}
		name := string(names[:i])
		names = names[min(i+1, len(names)):]
		if name == "" {
			continue
		}
		v, err := oracleGetxattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
		}
		out = append(out, oracleXattr{name: name, value: v})
	}
	return out, nil
}

func oracleGetxattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = unix.Lgetxattr(p, name, nil); err != nil {
				return "", err
			}
			buf = make([]byte, n+1)
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
}

func oracleIsOpaque(xs []oracleXattr) bool {
	for _, x := range xs {
		if (x.name == "trusted.overlay.opaque" || x.name == "user.overlay.opaque") && x.value == "y" {
			return true
		}
	}
	return false
}

func oracleHasWhiteout(xs []oracleXattr) bool {
	for _, x := range xs {
		if x.name == "trusted.overlay.whiteout" || x.name == "user.overlay.whiteout" {
			return true
		}
	}
	return false
}
