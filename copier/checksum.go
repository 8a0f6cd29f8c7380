package copier

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Checksum digests what Copy would read for req: for every selected source
// its name and, for each entry, the relative path, type, mode, owner (0:0
// for the build context), symlink target, device number, xattrs, hard-link
// grouping and file content; plus the inline files. mtimes never count, nor
// do ignored or excluded files. Dest, Chown and Chmod are not included: they
// belong to the instruction, which the caller keys separately. The result
// is "sha256:HEX". With req.Digests, a regular file whose lstat matches a
// remembered one is not read; the result is the same either way.
func Checksum(ctx context.Context, req Request) (string, error) {
	sel, err := newSelector(req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", opName(req), err)
	}
	items, err := sel.selectAll(ctx, req)
	if err != nil {
		return "", fmt.Errorf("%s failed: %w", opName(req), err)
	}
	c := &checksummer{
		h:         sha256.New(),
		root:      sel.root,
		zeroOwner: req.FromContext,
		links:     map[devIno]string{},
		buf:       make([]byte, 64<<10),
		digests:   req.Digests,
	}
	for _, it := range items {
		c.field("source")
		c.field(it.name)
		c.field(it.rel)
		if !it.info.IsDir() {
			if err := c.entry(ctx, entry{rel: ".", abs: it.abs, info: it.info}, true); err != nil {
				return "", err
			}
			continue
		}
		// A directory's own metadata is only copied with --parents.
		err := sel.walk(ctx, it, func(e entry) error {
			return c.entry(ctx, e, e.rel != "." || req.Parents)
		}, nil)
		if err != nil {
			return "", fmt.Errorf("checksum of %s: %w", displaySrc(it.name), err)
		}
	}
	for _, in := range req.Inline {
		c.field("inline")
		c.field(in.Name)
		c.num(uint64(in.Mode))
		c.field(string(in.Data))
	}
	return "sha256:" + hex.EncodeToString(c.h.Sum(nil)), nil
}

// checksummer feeds length-prefixed fields to a hash, so no two different
// inputs can produce the same byte stream.
type checksummer struct {
	h         hash.Hash
	root      string // SrcRoot: recorded paths are relative to it
	zeroOwner bool
	links     map[devIno]string // inode -> first path (relative), for hard links
	buf       []byte
	digests   FileDigests // nil: read every file
}

func (c *checksummer) field(s string) {
	c.num(uint64(len(s)))
	io.WriteString(c.h, s)
}

func (c *checksummer) num(n uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	c.h.Write(b[:])
}

// entry digests one path; withMeta false records only its name and type.
func (c *checksummer) entry(ctx context.Context, e entry, withMeta bool) error {
	st := e.info.Sys().(*syscall.Stat_t)
	c.field("entry")
	c.field(e.rel)
	c.num(uint64(st.Mode & unix.S_IFMT))
	if !withMeta {
		return nil
	}
	c.num(uint64(st.Mode & 0o7777))
	if c.zeroOwner {
		c.num(0)
	} else {
		c.num(uint64(st.Uid)<<32 | uint64(st.Gid))
	}
	names, values, err := listXattrs(e.abs)
	if err != nil {
		return fmt.Errorf("reading xattrs of %s: %w", e.abs, err)
	}
	c.num(uint64(len(names)))
	for i, n := range names {
		c.field(n)
		c.field(string(values[i]))
	}
	switch mode := e.info.Mode(); {
	case mode.IsRegular():
		if st.Nlink > 1 {
			key := devIno{uint64(st.Dev), st.Ino}
			if first, ok := c.links[key]; ok {
				c.field("hardlink")
				c.field(first)
				return nil
			}
			rel, err := filepath.Rel(c.root, e.abs)
			if err != nil {
				return err
			}
			c.links[key] = rel
		}
		return c.content(ctx, e.abs, st)
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(e.abs)
		if err != nil {
			return fmt.Errorf("reading link %s: %w", e.abs, err)
		}
		c.field(target)
	case mode&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		c.num(uint64(st.Rdev))
	}
	return nil
}

// content digests a file's bytes (streamed, never held in memory), or
// takes the digest from c.digests when st shows the file unchanged.
func (c *checksummer) content(ctx context.Context, p string, st *syscall.Stat_t) error {
	if c.digests != nil {
		if sum, ok := c.digests.Lookup(p, unixStat(st)); ok && len(sum) == sha256.Size {
			c.field(string(sum))
			return nil
		}
	}
	// Taken before the fstat below: Record needs a time no later than
	// the moment the recorded stat was known to hold.
	start := time.Now()
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", p, err)
	}
	defer f.Close()
	var before unix.Stat_t
	if c.digests != nil {
		if err := unix.Fstat(int(f.Fd()), &before); err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
	}
	fh := sha256.New()
	buf := c.buf
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := f.Read(buf)
		fh.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
	}
	sum := fh.Sum(nil)
	c.field(string(sum))
	if c.digests != nil {
		// The stat recorded is the open file's, and only if nothing
		// visibly changed it while it was read.
		var after unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &after); err == nil && sameStat(&before, &after) {
			c.digests.Record(p, &before, start, sum)
		}
	}
	return nil
}

// unixStat converts the walk's lstat for FileDigests.
func unixStat(st *syscall.Stat_t) *unix.Stat_t {
	return &unix.Stat_t{
		Dev:   st.Dev,
		Ino:   st.Ino,
		Nlink: st.Nlink,
		Mode:  st.Mode,
		Uid:   st.Uid,
		Gid:   st.Gid,
		Rdev:  st.Rdev,
		Size:  st.Size,
		Mtim:  unix.Timespec{Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec},
		Ctim:  unix.Timespec{Sec: st.Ctim.Sec, Nsec: st.Ctim.Nsec},
	}
}

// sameStat compares what a FileDigests may key on.
func sameStat(a, b *unix.Stat_t) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Mode == b.Mode && a.Size == b.Size &&
		a.Mtim == b.Mtim && a.Ctim == b.Ctim
}
