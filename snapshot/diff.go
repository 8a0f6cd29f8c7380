package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DiffOptions control Diff.
type DiffOptions struct {
	// Epoch (SOURCE_DATE_EPOCH), when set, clamps every mtime to at most it.
	Epoch *time.Time
}

// Diff is a pipeline, because its output's digest (a layer's diffID) is
// on the critical path of every build and hashing alone keeps a core busy:
//
//	walker:  the walk, in lexical order: open or stat, xattrs, hard
//	         links, whiteouts; each entry's tar.Header
//	workers: prepare entries: encode the header, read a small body
//	writer:  (the caller's goroutine) write headers, bodies and padding
//	         to w in walk order; stream big files; prepare entries itself
//	         when it catches up with the workers
//
// Entries travel in batches (fewer wake-ups). A batch's small bodies share
// one 1 MiB slab from copyBufs and its headers one buffer; a worker takes
// a batch's entries from the back, the writer from the front, each claim
// an atomic swap. At most batchesAhead batches wait for the writer, which
// bounds slabs, entries and open files in flight.
//
// The output must not change by a byte (recorded diffIDs depend on it):
// headers are archive/tar's own encoding (ustarHeader reproduces its plain
// USTAR case; the rest goes through a tar.Writer per header, since an
// encoding never depends on earlier entries), and padding and footer are
// written as tar.Writer writes them. Errors found ahead (stat, xattrs,
// open, read) ride in their entry and are returned when the writer
// reaches it, after the same bytes and with the same text as the
// sequential implementation (kept in diff_oracle_test.go as the tests'
// oracle).
//
// The walker works relative to open directories and examines regular
// files and directories through the fd it opens anyway (fstat,
// flistxattr): path lookups were most of its cost. Files are opened with
// plain syscalls, not os.Open (whose poller registration cost four fcntl
// and an epoll_ctl per file). It walks as filepath.WalkDir did, errors
// included.
//
// Measured on 2 cores: with a warm page cache more than two workers do
// not pay (both cores are busy); with a cold one two workers took the
// benchmark tree from 0.58 s (no workers; sequential: 0.71 s) to 0.36 s,
// more added little.
type limits struct {
	prefetchMax  int64 // larger files are streamed by the writer; at most the slab size
	batchEntries int
	batchesAhead int // ≤ batchesAhead+2 slabs and batches in flight
	workers      int // 0: the writer reads every body itself
	maxDirFDs    int // open directories kept down the tree; deeper, paths are used
	maxOpenFiles int // files the walker leaves open for the readers
}

func defaultLimits() limits {
	// Enough open files for every entry in flight (a file closed early
	// is opened again by path, which costs more than the first open),
	// but no more than an eighth of what the process may open.
	files := 1024
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur/8 < uint64(files) {
		files = int(rl.Cur / 8)
	}
	return limits{
		prefetchMax:  1 << 20,
		batchEntries: 64,
		batchesAhead: 12, // 14 MiB of slabs, 896 entries at most
		workers:      2,
		maxDirFDs:    32,
		maxOpenFiles: files,
	}
}

// pathMax is PATH_MAX: longer paths are left to fail as with path syscalls.
const pathMax = 4096

// Diff writes the overlay upper dir upper as an OCI layer tar to w and
// reports whether it had no entries. Overlay whiteouts (0/0 character
// devices, or zero-size files with an overlay whiteout xattr) become
// .wh.NAME entries, opaque directories get a .wh..wh..opq entry after
// them, and files hard-linked within upper become tar hard links. The tar
// footer is written; w is not closed. On an error or a cancelled ctx no
// goroutine of Diff outlives the call.
func Diff(ctx context.Context, upper string, w io.Writer, opts DiffOptions) (empty bool, err error) {
	return diffWith(ctx, upper, w, opts, defaultLimits())
}

// diffWith is Diff with the pipeline's limits (tests stress small ones).
func diffWith(ctx context.Context, upper string, w io.Writer, opts DiffOptions, lim limits) (empty bool, err error) {
	upper = filepath.Clean(upper)
	wctx, stop := context.WithCancel(ctx)
	d := &differ{
		ctx:   wctx,
		upper: upper,
		opts:  opts,
		lim:   lim,
		links: map[inode]string{},
		names: make([]byte, 1024),
		dents: make([]byte, 32<<10),
		queue: make(chan *batch, lim.batchesAhead),
		jobs:  make(chan *batch, lim.batchesAhead),
	}
	d.noatime.Store(true)
	var wg sync.WaitGroup
	wg.Go(d.walk)
	for range lim.workers {
		wg.Go(d.prefetch)
	}
	defer func() {
		stop()
		wg.Wait()
		// Workers have stopped: slabs can go back to the pool.
		if d.held != nil {
			d.release(d.held)
		}
		for b := range d.queue { // walker has closed it: nothing else sends
			d.release(b)
		}
	}()
	n, err := d.emit(ctx, w)
	if err != nil {
		return false, fmt.Errorf("diffing %s: %w", upper, err)
	}
	return n == 0, nil
}

type inode struct{ dev, ino uint64 }

// differ is the state of one Diff call. links, names, dents and cur belong
// to the walker, held to the writer; noatime is shared; batches change
// hands through the channels, their entries through claims.
type differ struct {
	ctx    context.Context // cancelled when Diff returns
	upper  string
	opts   DiffOptions
	lim    limits
	links  map[inode]string // first name of each multiply-linked file
	names  []byte           // xattr name list scratch
	dents  []byte           // getdents scratch
	cur    *batch           // being filled by the walker
	failed bool             // the walk stopped on an error, queued
	held   *batch           // being written by the writer

	noatime   atomic.Bool  // O_NOATIME is still worth trying
	openFiles atomic.Int32 // files the walker left open for the readers
	queue     chan *batch  // walker -> writer, in walk order; closed by the walker
	jobs      chan *batch  // walker -> workers, batches with entries to prepare
}

// batch is a run of consecutive entries.
type batch struct {
	ents []dentry
	hdrs []byte  // a hdrSlot for each entry's header bytes
	slab *[]byte // their prefetched bodies (nil when none)
	used int     // bytes of slab handed out
	// claims[i] says who prepares entry i (encodes its header, reads its
	// body): 0 nobody yet, claimedByWorker or claimedByWriter. A worker
	// takes entries from the back, the writer from the front when it
	// catches up, so neither waits for the other for long. done is closed
	// when the worker is through with the batch.
	claims []atomic.Int32
	done   chan struct{}
	last   bool // the walk ended with this batch (normally or with an error)
}

const (
	claimedByWorker = 1
	claimedByWriter = 2
	hdrSlot         = 512 // a plain header; PAX headers get their own buffer
)

// release gives the slab back and closes files nobody read. No worker may
// be reading into the slab: it goes back to a pool shared with Apply.
func (d *differ) release(b *batch) {
	for i := range b.ents {
		if e := &b.ents[i]; e.hasFD {
			d.closeKept(e)
		}
	}
	if b.slab != nil {
		copyBufs.Put(b.slab)
		b.slab = nil
	}
}

// dentry is one tar entry, or a walk step that ends the walk or checks ctx.
type dentry struct {
	check   bool  // check ctx before this entry (once per walked path)
	err     error // stops the diff when reached, before any byte of the entry
	noHdr   bool  // only check and err are meaningful
	th      *tar.Header
	hdr     []byte // th encoded, by whoever prepares the entry
	hdrErr  error  // th could not be encoded
	p, rel  string
	size    int64 // body size, for regular files
	body    int   // 0: none; bodyPrefetched; bodyStreamed
	fd      int   // the file, open, for the worker to read and close (when hasFD)
	hasFD   bool
	off     int // prefetched body: slab[off : off+n]
	n       int
	fetch   bool  // the body is to be read into the slab (set by the walker only)
	bodyErr error // from opening (opening=true) or reading ahead
	opening bool
}

const (
	bodyPrefetched = 1
	bodyStreamed   = 2
)

// walk walks upper as filepath.WalkDir did, queueing entries for the
// writer; it always closes both channels. Only a walk that ran to its end
// or to an error (queued as an entry) gets the end marker, so the writer
// never takes a walk cut short by ctx for a whole one.
func (d *differ) walk() {
	defer close(d.jobs)
	defer close(d.queue)
	d.walkRoot()
	if d.ctx.Err() != nil && !d.failed {
		if d.cur != nil {
			d.release(d.cur)
		}
		return
	}
	if d.cur == nil {
		d.cur = &batch{}
	}
	d.cur.last = true
	d.flush()
}

func (d *differ) walkRoot() {
	// WalkDir: lstat the root, hand its error to the callback, never
	// follow a root symlink; the root itself is no entry (only the
	// callback's ctx check).
	info, err := os.Lstat(d.upper)
	if err != nil {
		d.fail(dentry{err: err})
		return
	}
	d.add(dentry{noHdr: true, check: true})
	if !info.IsDir() {
		return
	}
	fd, err := openDir(unix.AT_FDCWD, d.upper)
	if err != nil {
		d.fail(dentry{err: &fs.PathError{Op: "open", Path: d.upper, Err: err}})
		return
	}
	d.walkDir(fd, d.upper, 1)
}

// walkDir walks the children of directory p (open as fd, which it
// closes). It returns false when the walk stopped.
func (d *differ) walkDir(fd int, p string, depth int) bool {
	ents, err := readDir(fd, p, d.dents)
	if depth > d.lim.maxDirFDs {
		unix.Close(fd) // children are named by path
		fd = -1
	} else {
		defer unix.Close(fd)
	}
	if err != nil {
		d.fail(dentry{err: err})
		return false
	}
	for _, e := range ents {
		if d.ctx.Err() != nil {
			return false
		}
		// Names as WalkDir and the sequential callback made them.
		cp := filepath.Join(p, e.name)
		crel := filepath.ToSlash(strings.TrimPrefix(cp[len(d.upper):], "/"))
		at := fileAt{dir: fd, name: e.name, path: cp}
		if fd < 0 || len(cp) >= pathMax {
			at.dir, at.name = unix.AT_FDCWD, cp
		}
		sub, isDir, err := d.entry(at, e.typ, crel)
		if err != nil {
			d.fail(dentry{check: true, err: err})
			return false
		}
		if isDir {
			if sub < 0 {
				return false // the open error is queued
			}
			if !d.walkDir(sub, cp, depth+1) {
				return false
			}
		}
	}
	return true
}

// fileAt names a file for the *at syscalls: name in the open directory
// dir, or (dir = AT_FDCWD) the path itself.
type fileAt struct {
	dir  int
	name string
	path string // for messages and path-only syscalls
}

type dirent struct {
	name string
	typ  uint8 // DT_*
}

// readDir lists the open directory fd (path p) as os.ReadDir did: sorted
// by name, without . and .., errors as os.File.ReadDir's.
func readDir(fd int, p string, buf []byte) ([]dirent, error) {
	var out []dirent
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "readdirent", Path: p, Err: err}
		}
		if n <= 0 {
			break
		}
		for b := buf[:n]; len(b) >= 19; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				out = append(out, dirent{name: s, typ: b[18]})
			}
			b = b[reclen:]
		}
	}
	slices.SortFunc(out, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

func openDir(dir int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECTORY, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// entry queues the tar entries for the walked file at (rel is its slash
// name in the layer; typ its type from the directory listing), or returns
// the error the sequential walk stopped on. For a directory it returns
// isDir and its open fd (-1 after queueing the error of opening it).
//
// Regular files and directories are opened first and examined through
// the fd; anything else, or a file that could not be opened, is examined
// by name as before. A file found not to be what the listing said is
// examined by name too.
func (d *differ) entry(at fileAt, typ uint8, rel string) (sub int, isDir bool, err error) {
	var st unix.Stat_t
	fd, sub := -1, -1
	var openErr error
	switch typ {
	case unix.DT_REG:
		fd, openErr = d.openAt(at)
	case unix.DT_DIR:
		fd, openErr = openDir(at.dir, at.name)
		if openErr != nil {
			openErr = &fs.PathError{Op: "open", Path: at.path, Err: openErr}
		}
	}
	if fd >= 0 {
		want := uint32(unix.S_IFREG)
		if typ == unix.DT_DIR {
			want = unix.S_IFDIR
		}
		if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != want {
			unix.Close(fd)
			fd, openErr = -1, nil
		}
	}
	if fd < 0 {
		if err := unix.Fstatat(at.dir, at.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return -1, false, fmt.Errorf("stat %s: %w", rel, err)
		}
	}
	keep := false // fd handed on (to the workers or the recursion)
	defer func() {
		if fd >= 0 && !keep {
			unix.Close(fd)
		}
	}()
	xattrs, err := d.xattrs(fd, at.path)
	if err != nil {
		return -1, false, err
	}
	mtime := d.clamp(time.Unix(st.Mtim.Sec, st.Mtim.Nsec))
	kind := st.Mode & unix.S_IFMT
	if kind == unix.S_IFCHR && st.Rdev == 0 || kind == unix.S_IFREG && st.Size == 0 && hasWhiteoutXattr(xattrs) {
		dir, base := path.Split(rel)
		d.header(dentry{check: true}, &tar.Header{Typeflag: tar.TypeReg, Name: dir + whPrefix + base, ModTime: mtime})
		return -1, false, nil
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: mtime,
	}
	for _, x := range xattrs {
		if skipXattr(x.name) {
			continue
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[xattrPAX+x.name] = x.value
	}
	switch kind {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		d.header(dentry{check: true}, hdr)
		if isOpaque(xattrs) {
			d.header(dentry{}, &tar.Header{Typeflag: tar.TypeReg, Name: rel + "/" + whOpaque, ModTime: mtime})
		}
		// WalkDir read the directory (os.ReadDir) after its callback.
		if fd < 0 && openErr == nil {
			if fd, openErr = openDir(at.dir, at.name); openErr != nil {
				openErr = &fs.PathError{Op: "open", Path: at.path, Err: openErr}
			}
		}
		if openErr != nil {
			d.fail(dentry{err: openErr})
			return -1, true, nil
		}
		keep = true
		return fd, true, nil
	case unix.S_IFREG:
		if st.Nlink > 1 {
			key := inode{dev: st.Dev, ino: st.Ino}
			if first, ok := d.links[key]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				d.header(dentry{check: true}, hdr)
				return -1, false, nil
			}
			d.links[key] = rel
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		e := dentry{check: true, p: at.path, rel: rel, size: st.Size, body: bodyStreamed}
		if st.Size <= d.lim.prefetchMax {
			if d.cur != nil && d.cur.slab != nil && len(*d.cur.slab)-d.cur.used < int(st.Size) {
				d.flush() // no room left in this batch's slab
			}
			if d.cur == nil {
				d.cur = &batch{}
			}
			b := d.cur
			if b.slab == nil && st.Size > 0 {
				b.slab = copyBufs.Get().(*[]byte)
			}
			e.body, e.off = bodyPrefetched, b.used
			b.used += int(st.Size)
			if openErr != nil {
				e.bodyErr, e.opening = openErr, true
			} else {
				e.fetch = true
				// Far ahead of the readers the file is closed now and
				// opened again by name when read.
				if fd >= 0 && d.openFiles.Load() < int32(d.lim.maxOpenFiles) {
					d.openFiles.Add(1)
					e.fd, e.hasFD, keep = fd, true, true
				}
			}
		}
		d.header(e, hdr)
		return -1, false, nil
	case unix.S_IFLNK:
		target, err := readlinkAt(at)
		if err != nil {
			return -1, false, fmt.Errorf("reading link %s: %w", rel, err)
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
		d.add(dentry{noHdr: true, check: true}) // sockets cannot be put in a tar
		return -1, false, nil
	}
	d.header(dentry{check: true}, hdr)
	return -1, false, nil
}

// readlinkAt is os.Readlink for at, errors included.
func readlinkAt(at fileAt) (string, error) {
	for size := 128; ; size *= 2 {
		b := make([]byte, size)
		n, err := unix.Readlinkat(at.dir, at.name, b)
		for err == unix.EINTR {
			n, err = unix.Readlinkat(at.dir, at.name, b)
		}
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: at.path, Err: err}
		}
		if n < size {
			return string(b[:n]), nil
		}
	}
}

// fail queues the error the walk stops on.
func (d *differ) fail(e dentry) {
	e.noHdr = true
	d.failed = true
	d.add(e)
}

// add appends e to the current batch, handing the batch on when full.
func (d *differ) add(e dentry) {
	if d.cur == nil {
		d.cur = &batch{}
	}
	d.cur.ents = append(d.cur.ents, e)
	if len(d.cur.ents) >= d.lim.batchEntries {
		d.flush()
	}
}

// flush hands the current batch to the writer and (if it has entries to
// prepare) the workers. It gives up when Diff is returning.
func (d *differ) flush() {
	b := d.cur
	d.cur = nil
	if b == nil {
		return
	}
	work := false
	for i := range b.ents {
		work = work || !b.ents[i].noHdr
	}
	if work {
		b.claims = make([]atomic.Int32, len(b.ents))
		b.hdrs = make([]byte, hdrSlot*len(b.ents))
		b.done = make(chan struct{})
	}
	// The writer first: once queued, the writer or Diff's cleanup
	// releases the batch. The writer never waits for a worker that has
	// not claimed an entry, so it does not matter when a worker gets it.
	// Queueing is tried before looking at ctx, so that an error met
	// before a cancellation is seen is reported as the sequential walk
	// did (it checked ctx after the root's lstat).
	select {
	case d.queue <- b:
	default:
		select {
		case d.queue <- b:
		case <-d.ctx.Done():
			d.release(b) // nobody else has it
			return
		}
	}
	if b.done != nil && d.lim.workers > 0 {
		select {
		case d.jobs <- b:
		case <-d.ctx.Done():
		}
	}
}

// header queues e with header hdr.
func (d *differ) header(e dentry, hdr *tar.Header) {
	e.th = hdr
	d.add(e)
}

// prepare encodes entry i's header and reads its body when it has one to
// read ahead.
func (d *differ) prepare(b *batch, i int) {
	e := &b.ents[i]
	slot := b.hdrs[i*hdrSlot : (i+1)*hdrSlot : (i+1)*hdrSlot]
	if ustarHeader(slot, e.th) {
		e.hdr = slot
	} else {
		// A fresh tar.Writer per header: it only writes the header
		// blocks, exactly as the one long-lived writer of the sequential
		// version did.
		buf := bytes.NewBuffer(slot[:0])
		e.hdrErr = tar.NewWriter(buf).WriteHeader(e.th)
		e.hdr = buf.Bytes()
	}
	if e.fetch {
		d.readBody(e, b.slab)
	}
}

// ustarHeader encodes h into blk (512 zero bytes) exactly as
// archive/tar's Writer.WriteHeader does when it picks plain USTAR: no PAX
// records, ASCII names that fit their fields unsplit, numbers that fit in
// octal, a whole-second (or zero) mtime. It reports false, leaving blk
// for archive/tar, for anything else. Most entries take this path; it
// costs a fraction of archive/tar's format selection, and
// TestUSTARHeaderMatchesArchiveTar holds it to archive/tar's bytes.
func ustarHeader(blk []byte, h *tar.Header) bool {
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if strings.HasSuffix(h.Name, "/") {
			return false // archive/tar refuses these
		}
	case tar.TypeLink, tar.TypeSymlink, tar.TypeDir:
	default:
		return false
	}
	const max7, max11 = 1 << 21, 1 << 33 // octal digits that fit the fields
	mtime := int64(0)
	if t := h.ModTime.Round(time.Second); !t.IsZero() {
		mtime = t.Unix()
	}
	if len(h.PAXRecords) != 0 || len(h.Xattrs) != 0 || h.Uname != "" || h.Gname != "" || h.Format != tar.FormatUnknown ||
		!ustarString(h.Name) || !ustarString(h.Linkname) ||
		!inRange(h.Mode, max7) || !inRange(int64(h.Uid), max7) || !inRange(int64(h.Gid), max7) ||
		!inRange(h.Size, max11) || !inRange(h.Devmajor, max7) || !inRange(h.Devminor, max7) || !inRange(mtime, max11) {
		return false
	}
	copy(blk[0:100], h.Name)
	octal(blk[100:108], h.Mode)
	octal(blk[108:116], int64(h.Uid))
	octal(blk[116:124], int64(h.Gid))
	octal(blk[124:136], h.Size)
	octal(blk[136:148], mtime)
	blk[156] = h.Typeflag
	copy(blk[157:257], h.Linkname)
	copy(blk[257:265], "ustar\x0000")
	octal(blk[329:337], h.Devmajor)
	octal(blk[337:345], h.Devminor)
	sum := int64(8 * ' ') // the checksum field counts as spaces
	for i, c := range blk {
		if i < 148 || i >= 156 {
			sum += int64(c)
		}
	}
	octal(blk[148:155], sum)
	blk[155] = ' '
	return true
}

// ustarString reports whether archive/tar puts s in a USTAR name field as
// is: at most 100 bytes, ASCII without NUL.
func ustarString(s string) bool {
	if len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func inRange(v, limit int64) bool { return v >= 0 && v < limit }

// octal writes v zero-padded to fill b but its last byte, a NUL.
func octal(b []byte, v int64) {
	for i := len(b) - 2; i >= 0; i-- {
		b[i] = byte('0' + v&7)
		v >>= 3
	}
	b[len(b)-1] = 0
}

// prefetch prepares the batches on d.jobs until it is closed.
func (d *differ) prefetch() {
	for b := range d.jobs {
		d.fill(b)
	}
}

// fill prepares the entries of b, last first, until it meets one the
// writer took, then marks b done. Once Diff is returning it stops (files
// left open are closed by release).
func (d *differ) fill(b *batch) {
	defer close(b.done)
	for i := len(b.ents) - 1; i >= 0; i-- {
		if b.ents[i].noHdr {
			continue
		}
		if d.ctx.Err() != nil || !b.claims[i].CompareAndSwap(0, claimedByWorker) {
			return
		}
		d.prepare(b, i)
	}
}

// readBody reads e's body into its place in slab, recording what went
// wrong in e for the writer to report.
func (d *differ) readBody(e *dentry, slab *[]byte) {
	fd := e.fd
	if e.hasFD {
		defer d.closeKept(e)
	} else {
		var err error
		if fd, err = d.open(e.p); err != nil {
			e.bodyErr, e.opening = err, true
			return
		}
		defer unix.Close(fd)
	}
	if e.size > 0 {
		e.n, e.bodyErr = readFull(fd, e.p, (*slab)[e.off:e.off+int(e.size)])
	}
}

// closeKept closes the file the walker left open in e.
func (d *differ) closeKept(e *dentry) {
	unix.Close(e.fd)
	e.hasFD = false
	d.openFiles.Add(-1)
}

// emit writes the queued entries to w in order and the tar footer, and
// returns how many entries it wrote.
func (d *differ) emit(ctx context.Context, w io.Writer) (int, error) {
	var (
		n      int
		pad    int64 // zero bytes owed after the previous body
		stream *[]byte
		zeros  = make([]byte, blockSize)
	)
	defer func() {
		if stream != nil {
			copyBufs.Put(stream)
		}
	}()
	for {
		// No ctx case: the walker stops soon after ctx is cancelled and
		// closes the queue, and what it queued first is reported first.
		b := <-d.queue
		if b == nil {
			// Closed without an end marker: the walker stopped for ctx.
			if err := ctx.Err(); err != nil {
				return n, err
			}
			return n, errors.New("walk stopped early")
		}
		// Until it is released (or Diff's cleanup, after the workers have
		// stopped, does it) the batch is held.
		d.held = b
		waited := false
		for i := range b.ents {
			e := &b.ents[i]
			if e.check {
				if err := ctx.Err(); err != nil {
					return n, err
				}
			}
			if e.err != nil {
				return n, e.err
			}
			if e.noHdr {
				continue
			}
			if b.claims[i].CompareAndSwap(0, claimedByWriter) {
				d.prepare(b, i) // caught up with the workers
			} else if !waited {
				select { // the worker is on its last entry of b
				case <-b.done:
					waited = true
				case <-ctx.Done():
					return n, ctx.Err()
				}
			}
			// As tar.Writer.WriteHeader: the previous entry's padding first.
			if _, err := w.Write(zeros[:pad]); err != nil {
				return n, fmt.Errorf("writing tar header for %s: %w", e.th.Name, err)
			}
			pad = 0
			if e.hdrErr != nil {
				return n, fmt.Errorf("writing tar header for %s: %w", e.th.Name, e.hdrErr)
			}
			if _, err := w.Write(e.hdr); err != nil {
				return n, fmt.Errorf("writing tar header for %s: %w", e.th.Name, err)
			}
			n++
			var err error
			switch e.body {
			case bodyPrefetched:
				err = writePrefetched(w, e, b.slab)
			case bodyStreamed:
				if stream == nil {
					stream = copyBufs.Get().(*[]byte)
				}
				err = d.copyFile(ctx, w, e, *stream)
			}
			if err != nil {
				return n, err
			}
			pad = -e.size & (blockSize - 1)
		}
		// Every entry was prepared (by the writer, or by a worker that has
		// closed done), so no worker touches the slab any more.
		d.release(b)
		d.held = nil
		if b.last {
			break
		}
	}
	// As tar.Writer.Close: padding, then two zero blocks.
	if _, err := w.Write(zeros[:pad]); err != nil {
		return n, err
	}
	for range 2 {
		if _, err := w.Write(zeros); err != nil {
			return n, err
		}
	}
	return n, nil
}

const blockSize = 512

// writePrefetched writes a body read ahead, reporting what went wrong as
// the sequential io.CopyBuffer loop did: a write error over a read error,
// then a short file.
func writePrefetched(w io.Writer, e *dentry, slab *[]byte) error {
	if e.opening {
		return fmt.Errorf("opening %s: %w", e.rel, e.bodyErr)
	}
	if e.n > 0 {
		if _, err := w.Write((*slab)[e.off : e.off+e.n]); err != nil {
			return fmt.Errorf("copying %s: %w", e.rel, err)
		}
	}
	if e.bodyErr != nil {
		return fmt.Errorf("copying %s: %w", e.rel, e.bodyErr)
	}
	if int64(e.n) != e.size {
		return fmt.Errorf("copying %s: file shrank from %d to %d bytes", e.rel, e.size, e.n)
	}
	return nil
}

// copyFile streams exactly e.size bytes of a large file into w; bytes
// beyond the size seen by lstat (the file grew) are left out.
func (d *differ) copyFile(ctx context.Context, w io.Writer, e *dentry, buf []byte) error {
	fd, err := d.open(e.p)
	if err != nil {
		return fmt.Errorf("opening %s: %w", e.rel, err)
	}
	defer unix.Close(fd)
	var done int64
	for done < e.size {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := buf[:min(int64(len(buf)), e.size-done)]
		m, rerr := read(fd, e.p, chunk)
		if m > 0 {
			if _, err := w.Write(chunk[:m]); err != nil {
				return fmt.Errorf("copying %s: %w", e.rel, err)
			}
			done += int64(m)
		}
		if rerr != nil {
			return fmt.Errorf("copying %s: %w", e.rel, rerr)
		}
		if m == 0 {
			break
		}
	}
	if done != e.size {
		return fmt.Errorf("copying %s: file shrank from %d to %d bytes", e.rel, e.size, done)
	}
	return nil
}

// openAt opens the regular file at for reading with a plain openat:
// os.Open would also try (and fail) to register it with the poller, four
// fcntl and an epoll_ctl per file. O_NOATIME spares an inode write per
// file but needs ownership (or CAP_FOWNER); after one EPERM it is not
// tried again. O_NONBLOCK does nothing to a regular file but keeps a fifo
// swapped in since the listing from blocking the open. Errors read as
// os.Open's.
func (d *differ) openAt(at fileAt) (int, error) {
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	noatime := d.noatime.Load()
	for {
		f := flags
		if noatime {
			f |= unix.O_NOATIME
		}
		fd, err := unix.Openat(at.dir, at.name, f, 0)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EINTR:
		case err == unix.EPERM && noatime:
			noatime = false
			d.noatime.Store(false)
		default:
			return -1, &fs.PathError{Op: "open", Path: at.path, Err: err}
		}
	}
}

// open is openAt by path.
func (d *differ) open(p string) (int, error) {
	return d.openAt(fileAt{dir: unix.AT_FDCWD, name: p, path: p})
}

// read is one read(2), with errors as os.File.Read's.
func read(fd int, p string, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: p, Err: err}
		}
		return n, nil
	}
}

// readFull fills b unless the file ends first.
func readFull(fd int, p string, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := read(fd, p, b[n:])
		n += m
		if err != nil || m == 0 {
			return n, err
		}
	}
	return n, nil
}

// clamp drops sub-second precision (as other layer writers do, for
// reproducible layers) and applies the epoch.
func (d *differ) clamp(t time.Time) time.Time {
	t = t.Truncate(time.Second)
	if e := d.opts.Epoch; e != nil && t.After(*e) {
		return *e
	}
	return t
}

type xattr struct{ name, value string }

// xattrs lists the extended attributes of the open file fd, or when fd
// is -1 of p (not following symlinks). The name buffer starts at 1 KiB,
// so a file without xattrs costs one syscall. Messages name p either way.
func (d *differ) xattrs(fd int, p string) ([]xattr, error) {
	list := func(buf []byte) (int, error) {
		if fd >= 0 {
			return unix.Flistxattr(fd, buf)
		}
		return unix.Llistxattr(p, buf)
	}
	n, err := list(d.names)
	if errors.Is(err, unix.ERANGE) {
		if n, err = list(nil); err == nil {
			d.names = make([]byte, max(n*2, 1024))
			n, err = list(d.names)
		}
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	var out []xattr
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
		var v string
		if fd >= 0 {
			v, err = readXattr(func(b []byte) (int, error) { return unix.Fgetxattr(fd, name, b) })
		} else {
			v, err = getxattr(p, name)
		}
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
		}
		out = append(out, xattr{name: name, value: v})
	}
	return out, nil
}

// getxattr reads xattr name of p (not following symlinks).
func getxattr(p, name string) (string, error) {
	return readXattr(func(b []byte) (int, error) { return unix.Lgetxattr(p, name, b) })
}

// readXattr reads a value through get, growing the buffer on ERANGE.
func readXattr(get func([]byte) (int, error)) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := get(buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = get(nil); err != nil {
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

func isOpaque(xs []xattr) bool {
	for _, x := range xs {
		// "x" marks a dir holding xattr whiteouts, which is not opaque.
		if (x.name == opaqueXattr || x.name == userOpaqueXattr) && x.value == "y" {
			return true
		}
	}
	return false
}

func hasWhiteoutXattr(xs []xattr) bool {
	for _, x := range xs {
		if x.name == whiteoutXattr || x.name == userWhiteoutXa {
			return true
		}
	}
	return false
}
