package snapshot

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
	"time"
)

// tarHeaderBytes is what archive/tar writes for h (header blocks only).
func tarHeaderBytes(h *tar.Header) ([]byte, error) {
	var buf bytes.Buffer
	err := tar.NewWriter(&buf).WriteHeader(h)
	return buf.Bytes(), err
}

// TestUSTARHeaderMatchesArchiveTar holds the fast header encoder to
// archive/tar: whenever it encodes a header, the bytes are archive/tar's;
// it takes the common headers Diff makes; it leaves the rest alone.
func TestUSTARHeaderMatchesArchiveTar(t *testing.T) {
	mt := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, tc := range []struct {
		name string
		h    tar.Header
		fast bool
	}{
		{"file", tar.Header{Typeflag: tar.TypeReg, Name: "a/b", Mode: 0o644, Size: 5, ModTime: mt}, true},
		{"dir", tar.Header{Typeflag: tar.TypeDir, Name: "a/", Mode: 0o755, Uid: 1000, Gid: 1000, ModTime: mt}, true},
		{"link", tar.Header{Typeflag: tar.TypeLink, Name: "b", Linkname: "a/b", Mode: 0o644, ModTime: mt}, true},
		{"symlink", tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "../x", Mode: 0o777, ModTime: mt}, true},
		{"device", tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mt}, true},
		{"block device", tar.Header{Typeflag: tar.TypeBlock, Name: "loop0", Devmajor: 7, Devminor: 1<<20 - 1, ModTime: mt}, true},
		{"fifo", tar.Header{Typeflag: tar.TypeFifo, Name: "f", Mode: 0o600, ModTime: mt}, true},
		{"whiteout", tar.Header{Typeflag: tar.TypeReg, Name: "d/.wh.x", ModTime: mt}, true},
		{"zero mtime", tar.Header{Typeflag: tar.TypeReg, Name: "z", Mode: 0o644}, true},
		{"epoch mtime", tar.Header{Typeflag: tar.TypeReg, Name: "z", ModTime: time.Unix(0, 0)}, true},
		{"mtime rounds up", tar.Header{Typeflag: tar.TypeReg, Name: "z", ModTime: time.Unix(100, 5e8)}, true},
		{"mtime rounds down", tar.Header{Typeflag: tar.TypeReg, Name: "z", ModTime: time.Unix(100, 5e8-1)}, true},
		{"mtime in a zone", tar.Header{Typeflag: tar.TypeReg, Name: "z", ModTime: mt.In(time.FixedZone("x", 3600))}, true},
		{"largest mtime", tar.Header{Typeflag: tar.TypeReg, Name: "z", ModTime: time.Unix(1<<33-1, 0)}, true},
		{"mtime too large", tar.Header{Typeflag: tar.TypeReg, Name: "z", ModTime: time.Unix(1<<33, 0)}, false},
		{"mtime rounds to too large", tar.Header{Typeflag: tar.TypeReg, Name: "z", ModTime: time.Unix(1<<33-1, 6e8)}, false},
		{"mtime before 1970", tar.Header{Typeflag: tar.TypeReg, Name: "z", ModTime: time.Unix(-1, 0)}, false},
		{"largest uid", tar.Header{Typeflag: tar.TypeReg, Name: "u", Uid: 1<<21 - 1, Gid: 1<<21 - 1}, true},
		{"uid too large", tar.Header{Typeflag: tar.TypeReg, Name: "u", Uid: 1 << 21}, false},
		{"gid too large", tar.Header{Typeflag: tar.TypeReg, Name: "u", Gid: 1 << 21}, false},
		{"negative uid", tar.Header{Typeflag: tar.TypeReg, Name: "u", Uid: -1}, false},
		{"largest size", tar.Header{Typeflag: tar.TypeReg, Name: "s", Size: 1<<33 - 1}, true},
		{"size too large", tar.Header{Typeflag: tar.TypeReg, Name: "s", Size: 1 << 33}, false},
		{"all mode bits", tar.Header{Typeflag: tar.TypeReg, Name: "m", Mode: 0o7777}, true},
		{"mode too large", tar.Header{Typeflag: tar.TypeReg, Name: "m", Mode: 1 << 21}, false},
		{"name of 100", tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("n", 100)}, true},
		{"dir name of 100", tar.Header{Typeflag: tar.TypeDir, Name: strings.Repeat("n", 99) + "/"}, true},
		{"name of 101", tar.Header{Typeflag: tar.TypeReg, Name: "d/" + strings.Repeat("n", 99)}, false},
		{"linkname of 100", tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: strings.Repeat("t", 100)}, true},
		{"linkname of 101", tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: strings.Repeat("t", 101)}, false},
		{"control characters", tar.Header{Typeflag: tar.TypeReg, Name: "new\nline\t\x7f"}, true},
		{"non-ASCII name", tar.Header{Typeflag: tar.TypeReg, Name: "héllo"}, false},
		{"invalid UTF-8 name", tar.Header{Typeflag: tar.TypeReg, Name: "a\xffb"}, false},
		{"NUL in name", tar.Header{Typeflag: tar.TypeReg, Name: "a\x00b"}, false},
		{"non-ASCII linkname", tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "→"}, false},
		{"xattrs", tar.Header{Typeflag: tar.TypeReg, Name: "x", PAXRecords: map[string]string{"SCHILY.xattr.user.a": "b"}}, false},
		{"user name", tar.Header{Typeflag: tar.TypeReg, Name: "x", Uname: "root"}, false},
		{"format chosen", tar.Header{Typeflag: tar.TypeReg, Name: "x", Format: tar.FormatPAX}, false},
		{"file with a trailing slash", tar.Header{Typeflag: tar.TypeReg, Name: "x/"}, false},
		{"old regular type", tar.Header{Typeflag: tar.TypeRegA, Name: "x"}, false},
		{"PAX type", tar.Header{Typeflag: tar.TypeXHeader, Name: "x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkUSTAR(t, &tc.h, tc.fast)
		})
	}
}

// checkUSTAR compares ustarHeader with archive/tar for h; want is whether
// the fast path must take h.
func checkUSTAR(t *testing.T, h *tar.Header, fast bool) bool {
	t.Helper()
	blk := make([]byte, hdrSlot)
	orig := *h
	ok := ustarHeader(blk, h)
	if ok != fast {
		t.Errorf("fast path took %+v: %v, want %v", *h, ok, fast)
	}
	want, err := tarHeaderBytes(&orig)
	if !ok {
		if !bytes.Equal(blk, make([]byte, hdrSlot)) {
			t.Errorf("declined %+v but wrote into the block", *h)
		}
		return false
	}
	if err != nil {
		t.Errorf("encoded %+v, which archive/tar refuses: %v", *h, err)
	} else if !bytes.Equal(blk, want) {
		t.Errorf("%+v encoded differently:\ngot  %q\nwant %q", *h, blk, want)
	}
	return true
}

// TestUSTARHeaderRandom compares the two encoders on many headers mixing
// values on both sides of every limit.
func TestUSTARHeaderRandom(t *testing.T) {
	rnd := xorshift(0x2545f4914f6cdd1d)
	pick := func(n int) int { return int(rnd.next() % uint64(n)) }
	names := []string{"", "a", "a/b/c", "dir/", strings.Repeat("p", 99), strings.Repeat("p", 100), strings.Repeat("p", 101),
		"x/" + strings.Repeat("q", 120), "ünï", "tab\there", "\x01\x1f", "d/.wh..wh..opq"}
	types := []byte{tar.TypeReg, tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo, tar.TypeRegA, 'Z'}
	nums := []int64{0, 1, 0o644, 0o7777, 1<<21 - 1, 1 << 21, 1<<33 - 1, 1 << 33, -1}
	times := []time.Time{{}, time.Unix(0, 0), time.Unix(1700000000, 0), time.Unix(1700000000, 999999999), time.Unix(1<<33-1, 0), time.Unix(-5, 0)}
	taken := 0
	for range 20000 {
		h := &tar.Header{
			Typeflag: types[pick(len(types))],
			Name:     names[pick(len(names))],
			Linkname: names[pick(len(names))],
			Mode:     nums[pick(4)],
			Uid:      int(nums[pick(len(nums))]),
			Gid:      int(nums[pick(6)]),
			Size:     nums[pick(len(nums))],
			Devmajor: nums[pick(len(nums))],
			Devminor: nums[pick(6)],
			ModTime:  times[pick(len(times))],
		}
		blk := make([]byte, hdrSlot)
		if ustarHeader(blk, h) {
			taken++
			if want, err := tarHeaderBytes(h); err != nil || !bytes.Equal(blk, want) {
				t.Fatalf("%+v: fast path differs from archive/tar (err %v)", *h, err)
			}
		}
	}
	t.Logf("fast path took %d of 20000", taken)
	if taken < 100 {
		t.Errorf("the fast path took only %d headers", taken)
	}
}
