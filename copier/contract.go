// Package copier carries out COPY and ADD: it selects sources under a source
// root (the build context, or another stage's or image's root filesystem)
// and writes them into a destination root filesystem with Dockerfile/BuildKit
// semantics. It works on host paths only; the caller has mounted both roots.
package copier

import (
	"time"

	"golang.org/x/sys/unix"
)

// Request is one COPY/ADD instruction.
type Request struct {
	// SrcRoot is the directory sources are relative to. Nothing outside it
	// is ever read: symlinks met while resolving a source are followed only
	// within SrcRoot (an absolute target restarts at SrcRoot).
	SrcRoot string
	// Sources are the source patterns as written (after ARG/ENV expansion).
	Sources []string
	// Inline files (COPY <<EOF heredocs) written to Dest/Name.
	Inline []Inline
	// Ignore holds .dockerignore patterns (context only; nil otherwise).
	Ignore []string
	// Excludes holds COPY --exclude patterns, relative to each copied
	// source (a top-level match is tested relative to its glob's base).
	Excludes []string
	// FromContext marks SrcRoot as the build context: copied entries get
	// owner 0:0 (the context's owners mean nothing in the image, as with
	// BuildKit's context transfer). Otherwise (--from a stage or image)
	// owners are kept. Chown overrides both.
	FromContext bool

	// DestRoot is the destination root filesystem (mounted, writable).
	DestRoot string
	// UserRoot is where --chown names are looked up (its /etc/passwd and
	// /etc/group); DestRoot when empty.
	UserRoot string
	// Reuse, when set, is an earlier result of the same COPY on the same
	// filesystem as DestRoot (written directly, not through an overlay):
	// a regular file there whose content, mode, owner, mtime and xattrs are
	// exactly what would be written is hard-linked instead of copied.
	Reuse string
	// ReuseIndex, used only with Reuse, names the index an earlier Copy
	// wrote (its IndexOut) for the Reuse tree. Where it records, for the
	// file at a destination path, exactly the identity the source has now
	// (lstat device, inode, size, mtime and ctime to the nanosecond), that
	// file's content is taken as equal without reading either file; every
	// other check above still applies. A missing, unreadable, damaged or
	// foreign file is no index: contents are compared as without one. The
	// caller must pair it with the tree it describes.
	ReuseIndex string
	// IndexOut, when set, is where Copy writes the index of this copy's
	// result, for a later Copy's ReuseIndex (with this result as Reuse).
	// It records every regular file the copy wrote from a source file
	// (copied, hard-linked or linked from Reuse; not inline files or what
	// ADD extracts from archives), by its path relative to DestRoot, with
	// the source's identity taken before reading it, and only for sources
	// whose mtime and ctime are more than 2 s older than the start of the
	// copy. It is written only when Copy succeeds, through a temp file in
	// the same directory renamed over it (a killed copy may leave
	// ".NAME.tmp*" there, never a partial NAME). Its directory must exist:
	// otherwise Copy fails before copying anything.
	IndexOut string
	// Dest is the destination as written; relative to Workdir when not absolute.
	Dest    string
	Workdir string

	Chown   string // "" = 0:0; "user[:group]" names resolved in DestRoot's /etc/passwd and /etc/group
	Chmod   string // "" = keep source modes; octal
	Add     bool   // ADD: local tar archives are extracted
	Parents bool   // --parents
	// Epoch, when non-nil (unix seconds), clamps written mtimes (SOURCE_DATE_EPOCH).
	Epoch *int64

	// Digests, when non-nil, lets Checksum skip reading regular files whose
	// stat it has seen before; the digest is the same with or without it.
	// Copy ignores it. It never crosses to a helper process (not JSON).
	Digests FileDigests `json:"-"`
}

// FileDigests remembers the content sha256 of regular files by absolute
// path and stat (package cache's StatCache is one). It must be safe for
// concurrent use: parallel stages checksum with the same one.
type FileDigests interface {
	// Lookup returns the content sha256 recorded for path, if st (from
	// lstat) still matches the stat it was recorded with.
	Lookup(path string, st *unix.Stat_t) (sum []byte, ok bool)
	// Record reports that path, whose stat was st before the read that
	// started at readStart, has content sha256 sum. The implementation
	// decides whether st is old enough to be trusted later.
	Record(path string, st *unix.Stat_t, readStart time.Time, sum []byte)
}

// Inline is a file whose content comes from the Dockerfile.
type Inline struct {
	Name string
	Data []byte
	Mode uint32
}
