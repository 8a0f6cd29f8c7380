package source

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// URLFileMode is the mode of a file added from a URL (BuildKit and the
// Dockerfile reference: "the destination will have permissions of 600").
const URLFileMode fs.FileMode = 0o600

// URLOptions are the ADD flags that matter to a download.
type URLOptions struct {
	// Checksum is ADD --checksum: "sha256:HEX", "sha384:HEX" or "sha512:HEX".
	// The content must match it or FetchURL fails and keeps nothing.
	Checksum string
	// Filename, when set, names the file instead of the response and URL.
	// It is reduced to a base name. (BuildKit's Dockerfile frontend always
	// passes the URL path's last component here, so Content-Disposition
	// never names an ADD file there; leave it empty to honour the header.)
	Filename string
}

// URLResult is a downloaded file, ready to copy.
type URLResult struct {
	// Dir holds exactly one entry, Name: use it as the copier's SrcRoot.
	// It lives in the cache and must not be modified.
	Dir string
	// Path is Dir/Name.
	Path string
	// Name is the file name: URLOptions.Filename, else the response's
	// Content-Disposition filename, else the URL path's last component;
	// always a single safe path component.
	Name string
	// Digest is the content's "sha256:HEX".
	Digest string
	Size   int64
	// ModTime is the file's mtime, already set on Path: the response's
	// Last-Modified, else the Unix epoch (0), as BuildKit does.
	ModTime time.Time
	// Mode is URLFileMode, already set on Path.
	Mode fs.FileMode
	// Downloaded is false when the stored content was reused: the server
	// answered 304 Not Modified, or a sha256 --checksum matched what the
	// cache already held (then no request is made at all).
	Downloaded bool
}

// CacheKey is what the ADD step's cache key should include for this
// source: a digest of the file's name, mode and content. The URL and mtime
// are deliberately left out: the same content under the same name keeps
// the step cached (the Dockerfile reference: mtime "isn't included in the
// determination of whether or not the file has changed").
func (r URLResult) CacheKey() string {
	h := sha256.New()
	for _, f := range []string{"strata/source.url.v1", r.Name, strconv.FormatUint(uint64(r.Mode), 8), r.Digest} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// urlRecord is the per-URL state kept between fetches.
type urlRecord struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	Digest       string `json:"digest"`
	Size         int64  `json:"size"`
	// RespName is the name the response and URL gave ("" if none): a
	// later call without URLOptions.Filename uses it after a 304.
	RespName string `json:"respName,omitempty"`
	// ModTime is the file's mtime in Unix nanoseconds.
	ModTime int64 `json:"modTime"`
	// Name and ID locate the stored file: files/ID/Name.
	Name string `json:"name"`
	ID   string `json:"id"`
}

type checksum struct {
	text string // normalised "algo:hex"
	algo string
	hex  string
}

func (c checksum) newHash() hash.Hash {
	switch c.algo {
	case "sha384":
		return sha512.New384()
	case "sha512":
		return sha512.New()
	}
	return sha256.New()
}

// parseChecksum validates ADD --checksum for a URL.
func parseChecksum(s string) (*checksum, error) {
	if s == "" {
		return nil, nil
	}
	algo, hx, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("invalid checksum %q: want ALGORITHM:HEX", s)
	}
	var n int
	switch algo {
	case "sha256":
		n = 64
	case "sha384":
		n = 96
	case "sha512":
		n = 128
	default:
		return nil, fmt.Errorf("invalid checksum %q: unsupported algorithm %q (want sha256, sha384 or sha512)", s, algo)
	}
	hx = strings.ToLower(hx)
	if len(hx) != n {
		return nil, fmt.Errorf("invalid checksum %q: %s needs %d hex digits", s, algo, n)
	}
	if _, err := hex.DecodeString(hx); err != nil {
		return nil, fmt.Errorf("invalid checksum %q: not hex", s)
	}
	return &checksum{text: algo + ":" + hx, algo: algo, hex: hx}, nil
}

type urlFetch struct {
	raw     string
	display string // the URL with any password redacted, for messages
	u       *url.URL
	want    *checksum
	opts    URLOptions
	recPath string
	files   string
	tmp     string
}

// FetchURL downloads rawURL (http or https) into cacheDir, or reuses what
// an earlier call stored when the server says it has not changed: the
// request carries If-None-Match / If-Modified-Since from the stored ETag /
// Last-Modified, and a 304 reuses the stored file. Redirects are followed
// as client does. A nil client means a fresh http.Client with the default
// transport. Errors start with "ADD <url>:".
func FetchURL(ctx context.Context, client *http.Client, cacheDir string, rawURL string, opts URLOptions) (URLResult, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return URLResult{}, fmt.Errorf("ADD: %w", urlParseError(err))
	}
	f := &urlFetch{raw: rawURL, display: u.Redacted(), u: u, opts: opts}
	if u.Scheme != "http" && u.Scheme != "https" {
		return URLResult{}, f.errorf("only http and https URLs can be downloaded")
	}
	if u.Host == "" {
		return URLResult{}, f.errorf("URL has no host")
	}
	if f.want, err = parseChecksum(opts.Checksum); err != nil {
		return URLResult{}, f.errorf("%w", err)
	}
	base := filepath.Join(cacheDir, "http")
	f.files = filepath.Join(base, "files")
	f.tmp = filepath.Join(base, "tmp")
	urls := filepath.Join(base, "urls")
	for _, d := range []string{f.files, f.tmp, urls} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return URLResult{}, f.errorf("%w", err)
		}
	}
	key := sha256.Sum256([]byte(rawURL))
	f.recPath = filepath.Join(urls, hex.EncodeToString(key[:])+".json")
	if client == nil {
		client = &http.Client{}
	}
	return f.fetch(ctx, client)
}

func (f *urlFetch) errorf(format string, args ...any) error {
	return fmt.Errorf("ADD %s: "+format, append([]any{f.display}, args...)...)
}

func (f *urlFetch) fetch(ctx context.Context, client *http.Client) (URLResult, error) {
	rec := f.readRecord()

	// A pinned sha256 that the cache already holds fully determines the
	// content: no request at all (BuildKit does the same), so a rebuild
	// with --checksum works offline.
	if rec != nil && f.want != nil && f.want.algo == "sha256" && rec.Digest == f.want.text {
		return f.reuse(ctx, rec)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.raw, nil)
	if err != nil {
		return URLResult{}, f.errorf("%w", err)
	}
	req.Header.Set("User-Agent", "strata")
	if rec != nil {
		if rec.ETag != "" {
			req.Header.Set("If-None-Match", rec.ETag)
		}
		if rec.LastModified != "" {
			req.Header.Set("If-Modified-Since", rec.LastModified)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return URLResult{}, f.errorf("%w", err)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusNotModified && rec != nil:
		return f.reuse(ctx, rec)
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return f.download(ctx, resp)
	default:
		return URLResult{}, f.errorf("unexpected status %s", resp.Status)
	}
}

// readRecord returns the stored record for the URL when it is sound and its
// file is still there; anything else is as if there were none.
func (f *urlFetch) readRecord() *urlRecord {
	b, err := os.ReadFile(f.recPath)
	if err != nil {
		return nil
	}
	var rec urlRecord
	if json.Unmarshal(b, &rec) != nil || rec.URL != f.raw || rec.ID == "" || safeName(rec.Name) != rec.Name {
		return nil
	}
	if c, err := parseChecksum(rec.Digest); err != nil || c == nil || c.algo != "sha256" {
		return nil
	}
	if filepath.Base(rec.ID) != rec.ID || rec.ID == "." || rec.ID == ".." {
		return nil
	}
	fi, err := os.Lstat(filepath.Join(f.files, rec.ID, rec.Name))
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != rec.Size {
		return nil
	}
	return &rec
}

// name picks the file name; respName is what the response/URL gave.
func (f *urlFetch) name(respName string) (string, error) {
	if f.opts.Filename != "" {
		if n := safeName(f.opts.Filename); n != "" {
			return n, nil
		}
		return "", f.errorf("invalid file name %q", f.opts.Filename)
	}
	if respName == "" {
		return "", f.errorf("cannot determine a file name: the URL path has no last component and the response gave none")
	}
	return respName, nil
}

// reuse answers from the stored file of rec, verifying a non-sha256
// checksum against it, and publishing a copy when a different name is
// asked for.
func (f *urlFetch) reuse(ctx context.Context, rec *urlRecord) (URLResult, error) {
	name, err := f.name(rec.RespName)
	if err != nil {
		return URLResult{}, err
	}
	stored := filepath.Join(f.files, rec.ID, rec.Name)
	mtime := time.Unix(0, rec.ModTime)
	if f.want != nil {
		if f.want.algo == "sha256" {
			if rec.Digest != f.want.text {
				return URLResult{}, f.mismatch(rec.Digest)
			}
		} else if err := f.verifyStored(ctx, stored); err != nil {
			return URLResult{}, err
		}
	}
	if name == rec.Name {
		return f.result(rec.ID, name, rec.Digest, rec.Size, mtime, false), nil
	}
	id := entryID(name, rec.Digest, mtime)
	if fi, err := os.Lstat(filepath.Join(f.files, id, name)); err == nil && fi.Mode().IsRegular() {
		return f.result(id, name, rec.Digest, fi.Size(), mtime, false), nil
	}
	src, err := os.Open(stored)
	if err != nil {
		return URLResult{}, f.errorf("%w", err)
	}
	defer src.Close()
	res, err := f.publish(ctx, ctxReader{ctx, src}, name, mtime)
	if err != nil {
		return URLResult{}, err
	}
	if res.Digest != rec.Digest {
		return URLResult{}, f.errorf("cached content changed: %s, recorded %s", res.Digest, rec.Digest)
	}
	res.Downloaded = false
	return res, nil
}

func (f *urlFetch) verifyStored(ctx context.Context, p string) error {
	src, err := os.Open(p)
	if err != nil {
		return f.errorf("%w", err)
	}
	defer src.Close()
	h := f.want.newHash()
	if _, err := io.Copy(h, ctxReader{ctx, src}); err != nil {
		return f.errorf("%w", err)
	}
	if got := f.want.algo + ":" + hex.EncodeToString(h.Sum(nil)); got != f.want.text {
		return f.mismatch(got)
	}
	return nil
}

func (f *urlFetch) mismatch(got string) error {
	return f.errorf("checksum mismatch: expected %s, got %s", f.want.text, got)
}

func (f *urlFetch) download(ctx context.Context, resp *http.Response) (URLResult, error) {
	respName := responseName(f.u, resp.Header.Get("Content-Disposition"))
	name, err := f.name(respName)
	if err != nil {
		return URLResult{}, err
	}
	mtime := time.Unix(0, 0)
	lastMod := resp.Header.Get("Last-Modified")
	if lastMod != "" {
		if t, err := http.ParseTime(lastMod); err == nil {
			mtime = t
		} else {
			lastMod = "" // unusable as a validator too
		}
	}
	res, err := f.publish(ctx, resp.Body, name, mtime)
	if err != nil {
		return URLResult{}, err
	}
	rec := urlRecord{
		URL:          f.raw,
		ETag:         resp.Header.Get("ETag"),
		LastModified: lastMod,
		Digest:       res.Digest,
		Size:         res.Size,
		RespName:     respName,
		ModTime:      mtime.UnixNano(),
		Name:         res.Name,
		ID:           filepath.Base(res.Dir),
	}
	b, err := json.Marshal(rec)
	if err == nil {
		err = writeFileAtomic(f.recPath, b)
	}
	if err != nil {
		// The file itself is fine; only the next fetch cannot be conditional.
		return URLResult{}, f.errorf("recording download: %w", err)
	}
	return res, nil
}

// publish streams r into a temp dir as name, hashing it, checks the
// checksum, sets mode and mtime, and renames the dir to files/ID.
func (f *urlFetch) publish(ctx context.Context, r io.Reader, name string, mtime time.Time) (res URLResult, err error) {
	dir, err := os.MkdirTemp(f.tmp, "dl-")
	if err != nil {
		return URLResult{}, f.errorf("%w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	p := filepath.Join(dir, name)
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, URLFileMode)
	if err != nil {
		return URLResult{}, f.errorf("%w", err)
	}
	h256 := sha256.New()
	w := io.MultiWriter(out, h256)
	var hw hash.Hash
	if f.want != nil && f.want.algo != "sha256" {
		hw = f.want.newHash()
		w = io.MultiWriter(out, h256, hw)
	}
	n, err := io.Copy(w, r)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return URLResult{}, f.errorf("downloading: %w", err)
	}
	digest := "sha256:" + hex.EncodeToString(h256.Sum(nil))
	if f.want != nil {
		got := digest
		if hw != nil {
			got = f.want.algo + ":" + hex.EncodeToString(hw.Sum(nil))
		}
		if got != f.want.text {
			return URLResult{}, f.mismatch(got)
		}
	}
	// Explicit: the umask could have narrowed it, never widened.
	if err := os.Chmod(p, URLFileMode); err != nil {
		return URLResult{}, f.errorf("%w", err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		return URLResult{}, f.errorf("%w", err)
	}
	id := entryID(name, digest, mtime)
	if _, err := publishDir(dir, filepath.Join(f.files, id)); err != nil {
		return URLResult{}, f.errorf("storing download: %w", err)
	}
	return f.result(id, name, digest, n, mtime, true), nil
}

func (f *urlFetch) result(id, name, digest string, size int64, mtime time.Time, downloaded bool) URLResult {
	dir := filepath.Join(f.files, id)
	return URLResult{
		Dir:        dir,
		Path:       filepath.Join(dir, name),
		Name:       name,
		Digest:     digest,
		Size:       size,
		ModTime:    mtime,
		Mode:       URLFileMode,
		Downloaded: downloaded,
	}
}

// entryID names a stored file by everything that is written to disk, so
// an entry never needs to change once published.
func entryID(name, digest string, mtime time.Time) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%o", name, digest, mtime.UnixNano(), URLFileMode)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// responseName is the name the response and URL give: the
// Content-Disposition filename if it yields a safe name, else the URL
// path's last component; "" when neither does.
func responseName(u *url.URL, contentDisposition string) string {
	if contentDisposition != "" {
		if _, params, err := mime.ParseMediaType(contentDisposition); err == nil {
			// A server may send a Windows-style path; both separators count.
			fn := strings.ReplaceAll(params["filename"], `\`, "/")
			if fn != "" && !strings.HasSuffix(fn, "/") {
				if n := safeName(fn); n != "" {
					return n
				}
			}
		}
	}
	return safeName(path.Base(u.Path))
}

// safeName reduces s to one path component that is safe to create in a
// directory: its last slash-separated element, trimmed; "" when that is
// empty, "." or "..", too long, or has control characters.
func safeName(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	s = path.Base(s)
	if s == "." || s == ".." || s == "/" || len(s) > 255 {
		return ""
	}
	for _, r := range s {
		if r == 0 || unicode.IsControl(r) {
			return ""
		}
	}
	return s
}
