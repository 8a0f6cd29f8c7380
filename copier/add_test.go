package copier

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// bzip2 has no writer in the standard library: a tar holding "foo" ("from
// bzip2", 0644) and a bzip2 text that is not a tar, made with Python's bz2.
const (
	bzip2Tar  = "QlpoOTFBWSZTWblIOeAAAHL7gMoAAEBAAH+AAAJxIt4QCAggAFQ0jUyBkHpA9R+qCSTSaBoAAaU4rIIQWxSEOwhE+sLCMpQQIZMczcTsIK7qAuFV7m0JRYQle1J3B6WJ5Fn9eJPx0REA/F3JFOFCQuUg54A="
	bzip2Text = "QlpoOTFBWSZTWSRWlPgAAATRgAAQQAQiEZ5AIAAhqNNoTNCAaAKtywPQWp8vFAS0XckU4UJAkVpT4A=="
)

func xzBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

func b64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAdd(t *testing.T) {
	requireRoot(t)
	one := func(name, data string) []byte {
		return makeTar(t, tarEntry{name: name, data: data, mode: 0o644})
	}
	meta := makeTar(t,
		tarEntry{name: "data/", typ: tar.TypeDir, mode: 0o750, uid: 123, gid: 456},
		tarEntry{name: "data/run.sh", data: "#!/bin/sh\necho hi\n", mode: 0o755, uid: 123, gid: 456},
		tarEntry{name: "data/link", typ: tar.TypeSymlink, link: "run.sh"},
		tarEntry{name: "data/setuid", data: "s", mode: 0o4755},
	)
	notTar := strings.Repeat("not a tar archive at all ", 40)
	src := []node{
		F("t.tar", string(one("foo", "content0"))),
		F("t.tar.gz", string(gzipBytes(t, one("foo", "gz")))),
		F("t.tar.xz", string(xzBytes(t, one("foo", "xz")))),
		F("t.tar.zst", string(zstdBytes(t, one("foo", "zstd")))),
		F("t.tar.bz2", b64(t, bzip2Tar)),
		F("misnamed.txt", string(gzipBytes(t, one("foo", "by magic")))),
		F("file.bz2", b64(t, bzip2Text)),
		F("text.gz", string(gzipBytes(t, []byte(notTar)))),
		F("plain", notTar),
		F("meta.tar", string(meta)),
		F("empty", ""),
	}
	cases := []copyCase{
		{name: "plain tar", req: Request{Add: true, Sources: []string{"t.tar"}, Dest: "/"},
			want: []string{"/foo f 0644 0:0 content0"}},
		{name: "gzip into a dir", req: Request{Add: true, Sources: []string{"t.tar.gz"}, Dest: "/gz/"},
			want: []string{"/gz d 0755 0:0", "/gz/foo f 0644 0:0 gz"}},
		{name: "dest without slash becomes a dir", req: Request{Add: true, Sources: []string{"t.tar.gz"}, Dest: "/again"},
			want: []string{"/again d 0755 0:0", "/again/foo f 0644 0:0 gz"}},
		{name: "xz", req: Request{Add: true, Sources: []string{"t.tar.xz"}, Dest: "/x/"},
			want: []string{"/x d 0755 0:0", "/x/foo f 0644 0:0 xz"}},
		{name: "zstd", req: Request{Add: true, Sources: []string{"t.tar.zst"}, Dest: "/x/"},
			want: []string{"/x d 0755 0:0", "/x/foo f 0644 0:0 zstd"}},
		{name: "bzip2", req: Request{Add: true, Sources: []string{"t.tar.bz2"}, Dest: "/x/"},
			want: []string{"/x d 0755 0:0", "/x/foo f 0644 0:0 from bzip2"}},
		{name: "detected by content not name", req: Request{Add: true, Sources: []string{"misnamed.txt"}, Dest: "/x/"},
			want: []string{"/x d 0755 0:0", "/x/foo f 0644 0:0 by magic"}},
		{name: "compressed non-tar copied", req: Request{Add: true, Sources: []string{"file.bz2", "text.gz"}, Dest: "/x/"},
			want: []string{"/x d 0755 0:0", "/x/file.bz2 f 0644 0:0 " + b64(t, bzip2Text),
				"/x/text.gz f 0644 0:0 " + string(gzipBytes(t, []byte(notTar)))}},
		{name: "ordinary and empty files copied", req: Request{Add: true, Sources: []string{"plain", "empty"}, Dest: "/x/"},
			want: []string{"/x d 0755 0:0", "/x/plain f 0644 0:0 " + notTar, "/x/empty f 0644 0:0 "}},
		{name: "COPY never extracts", req: Request{Sources: []string{"t.tar"}, Dest: "/copied/"},
			want: []string{"/copied d 0755 0:0", "/copied/t.tar f 0644 0:0 " + string(one("foo", "content0"))}},
		{name: "chown covers the archive", req: Request{Add: true, Sources: []string{"t.tar"}, Dest: "/out/", Chown: "100:200"},
			want: []string{"/out d 0755 100:200", "/out/foo f 0644 100:200 content0"}},
		{name: "archive metadata kept", req: Request{Add: true, Sources: []string{"meta.tar"}, Dest: "/opt/"},
			want: []string{"/opt d 0755 0:0", "/opt/data d 0750 123:456", "/opt/data/run.sh f 0755 123:456 #!/bin/sh\necho hi\n",
				"/opt/data/link l -> run.sh", "/opt/data/setuid f 4755 0:0 s"}},
		{name: "glob of archives", req: Request{Add: true, Sources: []string{"t.tar*"}, Dest: "/all/"},
			// Each archive writes foo in turn; the last (t.tar.zst) wins.
			want: []string{"/all d 0755 0:0", "/all/foo f 0644 0:0 zstd"}},
		{name: "archive onto a file fails", dst: []node{F("f", "x")},
			req: Request{Add: true, Sources: []string{"t.tar"}, Dest: "/f"}, wantErr: "not a directory"},
		{name: "URL", req: Request{Add: true, Sources: []string{"https://example.com/x.tar"}, Dest: "/"},
			wantErr: "ADD from URL is not supported yet"},
		{name: "URL in COPY", req: Request{Sources: []string{"http://example.com/x"}, Dest: "/"},
			wantErr: "source can't be a URL for COPY"},
	}
	for _, tc := range cases {
		tc.src = src
		t.Run(tc.name, tc.run)
	}
}

func TestAddArchiveHardLinks(t *testing.T) {
	requireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	arc := makeTar(t,
		tarEntry{name: "run.sh", data: "x", mode: 0o755},
		tarEntry{name: "hard", typ: tar.TypeLink, link: "run.sh"},
	)
	build(t, src, F("meta.tar", string(arc)))
	err := Copy(context.Background(), Request{SrcRoot: src, DestRoot: dst, Add: true, Sources: []string{"meta.tar"}, Dest: "/opt/", FromContext: true})
	if err != nil {
		t.Fatal(err)
	}
	assertSameInode(t, filepath.Join(dst, "opt/run.sh"), filepath.Join(dst, "opt/hard"))
}

func assertSameInode(t *testing.T, a, b string) {
	t.Helper()
	var sa, sb syscall.Stat_t
	if err := syscall.Lstat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Lstat(b, &sb); err != nil {
		t.Fatal(err)
	}
	if sa.Ino != sb.Ino || sa.Dev != sb.Dev {
		t.Fatalf("%s and %s are not hard-linked", a, b)
	}
}

func TestOpenArchiveRejectsNonArchives(t *testing.T) {
	dir := t.TempDir()
	tests := map[string][]byte{
		"empty":      nil,
		"short":      []byte("hi"),
		"zeros":      make([]byte, 1024),
		"gzip text":  gzipBytes(t, []byte("hello")),
		"bad gzip":   []byte("\x1f\x8b\x08garbage that is not deflate"),
		"xz garbage": []byte("\xfd7zXZ\x00garbage"),
	}
	for name, data := range tests {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, closeFn, ok, err := openArchive(p)
		if err != nil || ok {
			if closeFn != nil {
				closeFn()
			}
			t.Errorf("%s: openArchive = ok %v, err %v; want not an archive", name, ok, err)
		}
	}
}
