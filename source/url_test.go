package source

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// remoteFile is what the test server serves at one path.
type remoteFile struct {
	body         string
	etag         string
	lastModified time.Time // zero: no header
	disposition  string
	status       int // non-zero: answer only this status
	redirect     string
	truncate     bool // promise more bytes than sent, then drop the connection
}

// fileServer serves remoteFiles with ETag/Last-Modified validation and
// counts what it did.
type fileServer struct {
	mu          sync.Mutex
	files       map[string]remoteFile
	requests    int
	bodies      int
	notModified int
	lastHeaders http.Header
}

func newFileServer(t *testing.T) (*fileServer, *httptest.Server) {
	fs := &fileServer{files: map[string]remoteFile{}}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	return fs, srv
}

func (s *fileServer) set(p string, f remoteFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[p] = f
}

func (s *fileServer) counts() (requests, bodies, notModified int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.bodies, s.notModified
}

func (s *fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.lastHeaders = r.Header.Clone()
	f, ok := s.files[r.URL.Path]
	s.mu.Unlock()
	switch {
	case !ok:
		http.NotFound(w, r)
		return
	case f.redirect != "":
		http.Redirect(w, r, f.redirect, http.StatusFound)
		return
	case f.status != 0:
		w.WriteHeader(f.status)
		return
	}
	if f.etag != "" {
		w.Header().Set("ETag", f.etag)
	}
	if !f.lastModified.IsZero() {
		w.Header().Set("Last-Modified", f.lastModified.UTC().Format(http.TimeFormat))
	}
	if f.disposition != "" {
		w.Header().Set("Content-Disposition", f.disposition)
	}
	inm := r.Header.Get("If-None-Match")
	notModified := inm != "" && inm == f.etag
	if inm == "" && !f.lastModified.IsZero() {
		if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !f.lastModified.Truncate(time.Second).After(ims) {
			notModified = true
		}
	}
	if notModified {
		s.mu.Lock()
		s.notModified++
		s.mu.Unlock()
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.mu.Lock()
	s.bodies++
	s.mu.Unlock()
	if f.truncate {
		w.Header().Set("Content-Length", fmt.Sprint(len(f.body)+1000))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(f.body))
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
			}
		}
		return
	}
	_, _ = w.Write([]byte(f.body))
}

func sha256Of(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

// checkResult verifies the stored file against what was served.
func checkResult(t *testing.T, cacheDir string, res URLResult, body string, mtime time.Time) {
	t.Helper()
	if !strings.HasPrefix(res.Path, cacheDir+string(filepath.Separator)) {
		t.Fatalf("path %s not inside cache %s", res.Path, cacheDir)
	}
	if res.Path != filepath.Join(res.Dir, res.Name) {
		t.Fatalf("path %s is not dir %s + name %s", res.Path, res.Dir, res.Name)
	}
	b, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != body {
		t.Fatalf("content %q, want %q", b, body)
	}
	if res.Digest != sha256Of(body) || res.Size != int64(len(body)) {
		t.Fatalf("digest %s size %d, want %s %d", res.Digest, res.Size, sha256Of(body), len(body))
	}
	fi, err := os.Lstat(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 || res.Mode != 0o600 {
		t.Fatalf("mode %v (result %v), want 0600", fi.Mode(), res.Mode)
	}
	if !fi.ModTime().Equal(mtime) || !res.ModTime.Equal(mtime) {
		t.Fatalf("mtime %v (result %v), want %v", fi.ModTime(), res.ModTime, mtime)
	}
	ents, err := os.ReadDir(res.Dir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("result dir should hold only the file: %v %v", ents, err)
	}
}

func TestFetchURLConditional(t *testing.T) {
	lm := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	srv, hs := newFileServer(t)
	srv.set("/dl/file.txt", remoteFile{body: "version one", etag: `"v1"`, lastModified: lm})
	ctx := context.Background()
	cache := t.TempDir()
	u := hs.URL + "/dl/file.txt"

	first, err := FetchURL(ctx, hs.Client(), cache, u, URLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if first.Name != "file.txt" || !first.Downloaded {
		t.Fatalf("first fetch: %+v", first)
	}
	checkResult(t, cache, first, "version one", lm)
	if req, bodies, _ := srv.counts(); req != 1 || bodies != 1 {
		t.Fatalf("after first fetch: %d requests, %d bodies", req, bodies)
	}

	second, err := FetchURL(ctx, hs.Client(), cache, u, URLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.lastHeaders.Get("If-None-Match"); got != `"v1"` {
		t.Fatalf("If-None-Match = %q", got)
	}
	if got := srv.lastHeaders.Get("If-Modified-Since"); got != lm.Format(http.TimeFormat) {
		t.Fatalf("If-Modified-Since = %q", got)
	}
	if req, bodies, nm := srv.counts(); req != 2 || bodies != 1 || nm != 1 {
		t.Fatalf("after second fetch: %d requests, %d bodies, %d not-modified", req, bodies, nm)
	}
	if second.Downloaded || second.Path != first.Path || second.CacheKey() != first.CacheKey() {
		t.Fatalf("second fetch did not reuse: %+v vs %+v", second, first)
	}
	checkResult(t, cache, second, "version one", lm)

	// The remote changes: a new ETag means a new download and a new key.
	lm2 := lm.Add(time.Hour)
	srv.set("/dl/file.txt", remoteFile{body: "version two", etag: `"v2"`, lastModified: lm2})
	third, err := FetchURL(ctx, hs.Client(), cache, u, URLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if req, bodies, _ := srv.counts(); req != 3 || bodies != 2 {
		t.Fatalf("after change: %d requests, %d bodies", req, bodies)
	}
	if !third.Downloaded || third.CacheKey() == first.CacheKey() || third.Path == first.Path {
		t.Fatalf("changed file not re-downloaded: %+v", third)
	}
	checkResult(t, cache, third, "version two", lm2)
	// The earlier result's file is untouched (entries are immutable).
	checkResult(t, cache, first, "version one", lm)

	// And the new validators are the ones sent next.
	if _, err := FetchURL(ctx, hs.Client(), cache, u, URLOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := srv.lastHeaders.Get("If-None-Match"); got != `"v2"` {
		t.Fatalf("If-None-Match after change = %q", got)
	}
	if _, bodies, _ := srv.counts(); bodies != 2 {
		t.Fatalf("unchanged file downloaded again: %d bodies", bodies)
	}
}

func TestFetchURLLastModifiedOnly(t *testing.T) {
	lm := time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
	srv, hs := newFileServer(t)
	srv.set("/a.bin", remoteFile{body: "abc", lastModified: lm})
	cache := t.TempDir()
	for i := range 2 {
		res, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+"/a.bin", URLOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, cache, res, "abc", lm)
		if res.Downloaded != (i == 0) {
			t.Fatalf("fetch %d: downloaded = %v", i, res.Downloaded)
		}
	}
	if srv.lastHeaders.Get("If-None-Match") != "" {
		t.Fatal("sent an If-None-Match with no ETag known")
	}
	if _, bodies, nm := srv.counts(); bodies != 1 || nm != 1 {
		t.Fatalf("%d bodies, %d not-modified", bodies, nm)
	}
}

func TestFetchURLNoValidators(t *testing.T) {
	srv, hs := newFileServer(t)
	srv.set("/plain", remoteFile{body: "x"})
	cache := t.TempDir()
	for range 2 {
		res, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+"/plain", URLOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// No Last-Modified: the Unix epoch, as BuildKit.
		checkResult(t, cache, res, "x", time.Unix(0, 0))
		if !res.Downloaded {
			t.Fatal("nothing to validate with, yet not downloaded")
		}
	}
	if h := srv.lastHeaders; h.Get("If-None-Match") != "" || h.Get("If-Modified-Since") != "" {
		t.Fatalf("conditional headers without validators: %v", h)
	}
}

func TestFetchURLChecksum(t *testing.T) {
	body := "checksummed content"
	s384 := sha512.Sum384([]byte(body))
	s512 := sha512.Sum512([]byte(body))
	wrong := sha256Of("something else")
	tests := []struct {
		name, checksum, wantErr string
	}{
		{"sha256", sha256Of(body), ""},
		{"sha256 upper hex", strings.ToUpper(sha256Of(body)[7:]), "want ALGORITHM:HEX"},
		{"sha256 upper", "sha256:" + strings.ToUpper(sha256Of(body)[7:]), ""},
		{"sha384", "sha384:" + hex.EncodeToString(s384[:]), ""},
		{"sha512", "sha512:" + hex.EncodeToString(s512[:]), ""},
		{"mismatch", wrong, "checksum mismatch: expected " + wrong + ", got " + sha256Of(body)},
		{"sha512 mismatch", "sha512:" + strings.Repeat("0", 128), "checksum mismatch: expected sha512:" + strings.Repeat("0", 128) + ", got sha512:" + hex.EncodeToString(s512[:])},
		{"md5", "md5:0123456789abcdef0123456789abcdef", `unsupported algorithm "md5"`},
		{"short", "sha256:abcd", "needs 64 hex digits"},
		{"not hex", "sha256:" + strings.Repeat("z", 64), "not hex"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, hs := newFileServer(t)
			srv.set("/f.tgz", remoteFile{body: body, etag: `"e"`})
			cache := t.TempDir()
			res, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+"/f.tgz", URLOptions{Checksum: tc.checksum})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				checkResult(t, cache, res, body, time.Unix(0, 0))
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "ADD "+hs.URL+"/f.tgz: ") {
				t.Fatalf("error does not name the URL: %v", err)
			}
			// Nothing trusted is left behind.
			assertNothingStored(t, cache)
		})
	}
}

// assertNothingStored checks no published file, record or temp is left.
func assertNothingStored(t *testing.T, cache string) {
	t.Helper()
	for _, d := range []string{"files", "urls", "tmp"} {
		ents, err := os.ReadDir(filepath.Join(cache, "http", d))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Fatalf("%s holds %v after a failed fetch", d, ents)
		}
	}
}

func TestFetchURLPinnedChecksumSkipsNetwork(t *testing.T) {
	srv, hs := newFileServer(t)
	body := "pinned"
	srv.set("/p", remoteFile{body: body, etag: `"1"`})
	cache := t.TempDir()
	opts := URLOptions{Checksum: sha256Of(body)}
	if _, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+"/p", opts); err != nil {
		t.Fatal(err)
	}
	hs.Close() // the server is gone: the pinned content must come from the cache
	res, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+"/p", opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Downloaded {
		t.Fatal("pinned content downloaded again")
	}
	checkResult(t, cache, res, body, time.Unix(0, 0))
	if req, _, _ := srv.counts(); req != 1 {
		t.Fatalf("%d requests, want 1", req)
	}
	// A different pin is not satisfied by the cache and needs the server.
	if _, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+"/p", URLOptions{Checksum: sha256Of("other")}); err == nil {
		t.Fatal("fetch with another checksum and no server succeeded")
	}
}

func TestFetchURLNotModifiedChecksumMismatch(t *testing.T) {
	srv, hs := newFileServer(t)
	srv.set("/f", remoteFile{body: "cached", etag: `"1"`})
	cache := t.TempDir()
	if _, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+"/f", URLOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sum := range []string{sha256Of("different"), "sha384:" + strings.Repeat("a", 96)} {
		_, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+"/f", URLOptions{Checksum: sum})
		if err == nil || !strings.Contains(err.Error(), "checksum mismatch: expected "+sum) {
			t.Fatalf("304 with checksum %s: error %v", sum, err)
		}
	}
	if _, bodies, nm := srv.counts(); bodies != 1 || nm != 2 {
		t.Fatalf("%d bodies, %d not-modified", bodies, nm)
	}
}

func TestFetchURLStatusErrors(t *testing.T) {
	srv, hs := newFileServer(t)
	srv.set("/teapot", remoteFile{status: http.StatusTeapot})
	srv.set("/moved", remoteFile{status: http.StatusNotModified}) // 304 with nothing asked
	tests := []struct{ path, want string }{
		{"/missing", "unexpected status 404 Not Found"},
		{"/teapot", "unexpected status 418 I'm a teapot"},
		{"/moved", "unexpected status 304 Not Modified"},
	}
	for _, tc := range tests {
		cache := t.TempDir()
		u := hs.URL + tc.path
		_, err := FetchURL(context.Background(), hs.Client(), cache, u, URLOptions{})
		if err == nil || err.Error() != "ADD "+u+": "+tc.want {
			t.Fatalf("%s: error %v, want %q", tc.path, err, "ADD "+u+": "+tc.want)
		}
		assertNothingStored(t, cache)
	}
}

func TestFetchURLNaming(t *testing.T) {
	tests := []struct {
		name        string
		path        string
		disposition string
		filename    string
		want        string
		wantErr     string
	}{
		{name: "url base", path: "/x/y/tool.tar.gz", want: "tool.tar.gz"},
		{name: "dir url base", path: "/x/dir/", want: "dir"},
		{name: "disposition", path: "/get", disposition: `attachment; filename="report.csv"`, want: "report.csv"},
		{name: "disposition rfc5987", path: "/get", disposition: `attachment; filename*=UTF-8''na%C3%AFve.txt`, want: "naïve.txt"},
		{name: "hostile relative", path: "/get", disposition: `attachment; filename="../../x"`, want: "x"},
		{name: "hostile absolute", path: "/get", disposition: `attachment; filename="/etc/passwd"`, want: "passwd"},
		{name: "hostile backslashes", path: "/get", disposition: `attachment; filename="..\\..\\evil.sh"`, want: "evil.sh"},
		{name: "hostile dotdot", path: "/get", disposition: `attachment; filename=".."`, want: "get"},
		{name: "hostile trailing slash", path: "/get", disposition: `attachment; filename="../"`, want: "get"},
		{name: "control char", path: "/get", disposition: `attachment; filename*=UTF-8''a%01b`, want: "get"},
		{name: "unparsable disposition", path: "/get", disposition: `attachment; filename="unterminated`, want: "get"},
		{name: "no name at all", path: "/", wantErr: "cannot determine a file name"},
		{name: "no url name but disposition", path: "/", disposition: `inline; filename=index.html`, want: "index.html"},
		{name: "no url name but option", path: "/", filename: "page.html", want: "page.html"},
		{name: "option overrides disposition", path: "/get", disposition: `attachment; filename=a.txt`, filename: "b.txt", want: "b.txt"},
		{name: "option reduced to base", path: "/get", filename: "../../up.txt", want: "up.txt"},
		{name: "option invalid", path: "/get", filename: "..", wantErr: `invalid file name ".."`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, hs := newFileServer(t)
			srv.set(tc.path, remoteFile{body: "data", disposition: tc.disposition, etag: `"t"`})
			top := t.TempDir()
			cache := filepath.Join(top, "cache")
			res, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+tc.path, URLOptions{Filename: tc.filename})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				assertNothingStored(t, cache)
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if res.Name != tc.want {
					t.Fatalf("name %q, want %q", res.Name, tc.want)
				}
				checkResult(t, cache, res, "data", time.Unix(0, 0))
			}
			// Nothing was written beside the cache directory.
			ents, err := os.ReadDir(top)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 || ents[0].Name() != "cache" {
				t.Fatalf("entries beside the cache: %v", ents)
			}
		})
	}
}

func TestFetchURLRenameAfterNotModified(t *testing.T) {
	srv, hs := newFileServer(t)
	lm := time.Date(2022, 2, 2, 2, 2, 2, 0, time.UTC)
	srv.set("/get", remoteFile{body: "payload", etag: `"1"`, lastModified: lm, disposition: `attachment; filename=served.bin`})
	cache := t.TempDir()
	u := hs.URL + "/get"
	a, err := FetchURL(context.Background(), hs.Client(), cache, u, URLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := FetchURL(context.Background(), hs.Client(), cache, u, URLOptions{Filename: "chosen.bin"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := FetchURL(context.Background(), hs.Client(), cache, u, URLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "served.bin" || b.Name != "chosen.bin" || c.Name != "served.bin" {
		t.Fatalf("names %q %q %q", a.Name, b.Name, c.Name)
	}
	if b.Downloaded || c.Downloaded || b.Digest != a.Digest || b.Dir == a.Dir || c.Path != a.Path {
		t.Fatalf("unexpected results:\n%+v\n%+v\n%+v", a, b, c)
	}
	if a.CacheKey() == b.CacheKey() {
		t.Fatal("a different name must give a different cache key")
	}
	checkResult(t, cache, b, "payload", lm)
	if _, bodies, _ := srv.counts(); bodies != 1 {
		t.Fatalf("%d bodies", bodies)
	}
}

func TestFetchURLInterrupted(t *testing.T) {
	srv, hs := newFileServer(t)
	srv.set("/big", remoteFile{body: "partial", etag: `"1"`, truncate: true})
	cache := t.TempDir()
	u := hs.URL + "/big"
	if _, err := FetchURL(context.Background(), hs.Client(), cache, u, URLOptions{}); err == nil {
		t.Fatal("truncated download succeeded")
	}
	assertNothingStored(t, cache)

	srv.set("/big", remoteFile{body: "complete", etag: `"1"`})
	res, err := FetchURL(context.Background(), hs.Client(), cache, u, URLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if srv.lastHeaders.Get("If-None-Match") != "" {
		t.Fatal("a failed download left a validator behind")
	}
	checkResult(t, cache, res, "complete", time.Unix(0, 0))
}

func TestFetchURLCancelled(t *testing.T) {
	srv, hs := newFileServer(t)
	srv.set("/f", remoteFile{body: "x"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cache := t.TempDir()
	_, err := FetchURL(ctx, hs.Client(), cache, hs.URL+"/f", URLOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	assertNothingStored(t, cache)
}

func TestFetchURLRedirect(t *testing.T) {
	srv, hs := newFileServer(t)
	srv.set("/latest", remoteFile{redirect: "/releases/v2/tool-v2"})
	srv.set("/releases/v2/tool-v2", remoteFile{body: "tool", etag: `"t2"`})
	cache := t.TempDir()
	res, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+"/latest", URLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Named after the URL asked for, as BuildKit does.
	if res.Name != "latest" {
		t.Fatalf("name %q", res.Name)
	}
	checkResult(t, cache, res, "tool", time.Unix(0, 0))
	res2, err := FetchURL(context.Background(), hs.Client(), cache, hs.URL+"/latest", URLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Downloaded {
		t.Fatal("redirected file not revalidated through the redirect")
	}
}

func TestFetchURLBadURLs(t *testing.T) {
	tests := []struct{ url, want string }{
		{"ftp://example.com/f", "only http and https"},
		{"https:///nohost", "URL has no host"},
		{"https://user:secret@exa mple.com/f", "invalid URL"},
	}
	for _, tc := range tests {
		_, err := FetchURL(context.Background(), nil, t.TempDir(), tc.url, URLOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: error %v, want %q", tc.url, err, tc.want)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatalf("error leaks the password: %v", err)
		}
	}
}

func TestFetchURLRedactsPassword(t *testing.T) {
	_, hs := newFileServer(t)
	u := strings.Replace(hs.URL, "http://", "http://user:secret@", 1) + "/nothing"
	_, err := FetchURL(context.Background(), hs.Client(), t.TempDir(), u, URLOptions{})
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("error %v", err)
	}
}

func TestSafeName(t *testing.T) {
	tests := map[string]string{
		"a.txt": "a.txt", "  b  ": "b", "x/y/z": "z", "../..": "", "..": "", ".": "", "": "",
		"/": "", "a\x00b": "", "tab\tname": "", "ok name": "ok name", strings.Repeat("n", 256): "",
	}
	for in, want := range tests {
		if got := safeName(in); got != want {
			t.Errorf("safeName(%q) = %q, want %q", in, got, want)
		}
	}
}
