package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testRepo is a local repository made for one test.
type testRepo struct {
	t    *testing.T
	dir  string
	home string
	url  string // file:// URL
}

func newTestRepo(t *testing.T, name string) *testRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	base := t.TempDir()
	r := &testRepo{t: t, dir: filepath.Join(base, name), home: filepath.Join(base, "home")}
	if err := os.MkdirAll(r.home, 0o700); err != nil {
		t.Fatal(err)
	}
	r.url = "file://" + r.dir
	r.git(time.Time{}, "init", "-q", "-b", "main", r.dir)
	return r
}

// git runs git in the repo with a fixed identity and, for commits, date.
func (r *testRepo) git(date time.Time, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "protocol.file.allow=always"}, args...)...)
	cmd.Dir = filepath.Dir(r.dir)
	if _, err := os.Stat(r.dir); err == nil {
		cmd.Dir = r.dir
	}
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + r.home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
	}
	if !date.IsZero() {
		d := fmt.Sprintf("%d +0000", date.Unix())
		cmd.Env = append(cmd.Env, "GIT_AUTHOR_DATE="+d, "GIT_COMMITTER_DATE="+d)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *testRepo) write(rel, content string, mode fs.FileMode) {
	r.t.Helper()
	p := filepath.Join(r.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		r.t.Fatal(err)
	}
}

func (r *testRepo) commit(date time.Time, msg string) string {
	r.t.Helper()
	r.git(date, "add", "-A")
	r.git(date, "commit", "-q", "-m", msg)
	return r.git(time.Time{}, "rev-parse", "HEAD")
}

// fixture is the shared repository layout:
//
//	c1 (main, tag v1, annotated tag v1-ann): README, docs/guide.md,
//	    bin/run.sh (executable), link -> README, linkdir -> docs
//	c2 (main): README changed, docs/new.md, submodule vendor/lib
//	c3 (branch feature, from c1): feature.txt
type fixture struct {
	repo            *testRepo
	lib             *testRepo
	c1, c2, c3      string
	t1, t2, t3      time.Time
	annotatedTagSHA string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{
		t1: time.Date(2020, 1, 1, 10, 0, 0, 0, time.UTC),
		t2: time.Date(2020, 2, 1, 10, 0, 0, 0, time.UTC),
		t3: time.Date(2020, 3, 1, 10, 0, 0, 0, time.UTC),
	}
	f.lib = newTestRepo(t, "lib")
	f.lib.write("lib.txt", "library\n", 0o644)
	f.lib.commit(f.t1, "lib")

	r := newTestRepo(t, "repo")
	f.repo = r
	r.write("README", "one\n", 0o644)
	r.write("docs/guide.md", "guide\n", 0o600) // odd mode: normalised to 0644
	r.write("bin/run.sh", "#!/bin/sh\necho hi\n", 0o700)
	if err := os.Symlink("README", filepath.Join(r.dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("docs", filepath.Join(r.dir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	f.c1 = r.commit(f.t1, "first")
	r.git(time.Time{}, "tag", "v1")
	r.git(f.t1, "tag", "-a", "-m", "annotated", "v1-ann")
	f.annotatedTagSHA = r.git(time.Time{}, "rev-parse", "refs/tags/v1-ann")

	r.git(time.Time{}, "checkout", "-q", "-b", "feature")
	r.write("feature.txt", "feature\n", 0o644)
	f.c3 = r.commit(f.t3, "feature")
	r.git(time.Time{}, "checkout", "-q", "main")

	r.write("README", "two\n", 0o644)
	r.write("docs/new.md", "new\n", 0o644)
	r.git(f.t2, "submodule", "add", "-q", f.lib.url, "vendor/lib")
	f.c2 = r.commit(f.t2, "second")
	return f
}

// treeDigest digests every entry of dir: path, type and mode, mtime,
// content or link target.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\x00%v\x00%d\x00", rel, fi.Mode(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00", target)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
			h.Write([]byte{0})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// listTree returns "path mode" lines for dir, sorted.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, fmt.Sprintf("%s %v", rel, fi.Mode()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkMtimes asserts every entry of dir has mtime want.
func checkMtimes(t *testing.T, dir string, want time.Time) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !fi.ModTime().Equal(want) {
			return fmt.Errorf("%s: mtime %v, want %v", p, fi.ModTime(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFetchGitRefs(t *testing.T) {
	f := newFixture(t)
	allow := GitOptions{AllowFile: true}
	tests := []struct {
		name       string
		ref        string
		opts       GitOptions
		wantCommit string
		wantRef    string
		wantTime   time.Time
		wantTree   []string
		wantFiles  map[string]string
	}{
		{
			name: "default HEAD", ref: f.repo.url, opts: allow,
			wantCommit: f.c2, wantRef: "refs/heads/main", wantTime: f.t2,
			wantTree: []string{
				".gitmodules -rw-r--r--", "README -rw-r--r--", "bin drwxr-xr-x", "bin/run.sh -rwxr-xr-x",
				"docs drwxr-xr-x", "docs/guide.md -rw-r--r--", "docs/new.md -rw-r--r--",
				"link Lrwxrwxrwx", "linkdir Lrwxrwxrwx",
				"vendor drwxr-xr-x", "vendor/lib drwxr-xr-x", "vendor/lib/lib.txt -rw-r--r--",
			},
			wantFiles: map[string]string{"README": "two\n", "vendor/lib/lib.txt": "library\n"},
		},
		{
			name: "branch", ref: f.repo.url + "#feature", opts: allow,
			wantCommit: f.c3, wantRef: "refs/heads/feature", wantTime: f.t3,
			wantFiles: map[string]string{"feature.txt": "feature\n", "README": "one\n"},
		},
		{
			name: "full branch ref", ref: f.repo.url + "#refs/heads/feature", opts: allow,
			wantCommit: f.c3, wantRef: "refs/heads/feature", wantTime: f.t3,
		},
		{
			name: "lightweight tag", ref: f.repo.url + "#v1", opts: allow,
			wantCommit: f.c1, wantRef: "refs/tags/v1", wantTime: f.t1,
			wantFiles: map[string]string{"README": "one\n"},
		},
		{
			name: "annotated tag", ref: f.repo.url + "#v1-ann", opts: allow,
			wantCommit: f.c1, wantRef: "refs/tags/v1-ann", wantTime: f.t1,
		},
		{
			name: "commit sha", ref: f.repo.url + "#" + f.c1, opts: allow,
			wantCommit: f.c1, wantRef: f.c1, wantTime: f.t1,
			wantTree: []string{
				"README -rw-r--r--", "bin drwxr-xr-x", "bin/run.sh -rwxr-xr-x",
				"docs drwxr-xr-x", "docs/guide.md -rw-r--r--", "link Lrwxrwxrwx", "linkdir Lrwxrwxrwx",
			},
		},
		{
			name: "subdir", ref: f.repo.url + "#main:docs", opts: allow,
			wantCommit: f.c2, wantRef: "refs/heads/main", wantTime: f.t2,
			wantTree: []string{"guide.md -rw-r--r--", "new.md -rw-r--r--"},
		},
		{
			name: "subdir of HEAD", ref: f.repo.url + "#:vendor/lib", opts: allow,
			wantCommit: f.c2, wantRef: "refs/heads/main", wantTime: f.t2,
			wantTree: []string{"lib.txt -rw-r--r--"},
		},
		{
			name: "query form", ref: f.repo.url + "?branch=feature&subdir=docs", opts: allow,
			wantCommit: f.c3, wantRef: "refs/heads/feature", wantTime: f.t3,
			wantTree: []string{"guide.md -rw-r--r--"},
		},
		{
			name: "checksum prefix", ref: f.repo.url + "#v1", opts: GitOptions{AllowFile: true, Checksum: f.c1[:7]},
			wantCommit: f.c1, wantRef: "refs/tags/v1", wantTime: f.t1,
		},
		{
			name: "checksum of annotated tag object", ref: f.repo.url + "#v1-ann",
			opts:       GitOptions{AllowFile: true, Checksum: f.annotatedTagSHA},
			wantCommit: f.c1, wantRef: "refs/tags/v1-ann", wantTime: f.t1,
		},
		{
			name: "skip submodules", ref: f.repo.url, opts: GitOptions{AllowFile: true, SkipSubmodules: true},
			wantCommit: f.c2, wantRef: "refs/heads/main", wantTime: f.t2,
			wantFiles: map[string]string{"README": "two\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			res, err := FetchGit(context.Background(), cache, tc.ref, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Commit != tc.wantCommit || res.Ref != tc.wantRef || !res.Fetched {
				t.Fatalf("commit %s ref %s fetched %v, want %s %s", res.Commit, res.Ref, res.Fetched, tc.wantCommit, tc.wantRef)
			}
			if !strings.HasPrefix(res.Dir, cache+string(filepath.Separator)) {
				t.Fatalf("dir %s outside cache", res.Dir)
			}
			if !res.ModTime.Equal(tc.wantTime) {
				t.Fatalf("mod time %v, want %v", res.ModTime, tc.wantTime)
			}
			checkMtimes(t, res.Dir, tc.wantTime)
			tree := listTree(t, res.Dir)
			if tc.wantTree != nil && !slices.Equal(tree, tc.wantTree) {
				t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(tree, "\n"), strings.Join(tc.wantTree, "\n"))
			}
			for _, e := range tree {
				if strings.Contains("/"+e, "/.git ") || strings.Contains(e, "/.git/") {
					t.Fatalf(".git entry left: %s", e)
				}
			}
			for rel, want := range tc.wantFiles {
				if got := readFile(t, filepath.Join(res.Dir, rel)); got != want {
					t.Fatalf("%s = %q, want %q", rel, got, want)
				}
			}
			if tc.opts.SkipSubmodules {
				ents, err := os.ReadDir(filepath.Join(res.Dir, "vendor", "lib"))
				if err != nil || len(ents) != 0 {
					t.Fatalf("submodule checked out despite SkipSubmodules: %v %v", ents, err)
				}
			}
			if res.Remote != f.repo.url {
				t.Fatalf("remote %q", res.Remote)
			}
			// Nothing is left in progress.
			if ents, _ := os.ReadDir(filepath.Join(cache, "git", "tmp")); len(ents) != 0 {
				t.Fatalf("tmp not cleaned: %v", ents)
			}
		})
	}
}

func TestFetchGitLinks(t *testing.T) {
	f := newFixture(t)
	res, err := FetchGit(context.Background(), t.TempDir(), f.repo.url+"#v1", GitOptions{AllowFile: true})
	if err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]string{"link": "README", "linkdir": "docs"} {
		got, err := os.Readlink(filepath.Join(res.Dir, link))
		if err != nil || got != want {
			t.Fatalf("%s -> %q (%v), want %q", link, got, err, want)
		}
	}
}

func TestFetchGitKeepGitDir(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, ref string
		opts      GitOptions
		commit    string
	}{
		{"option", f.repo.url + "#feature", GitOptions{AllowFile: true, KeepGitDir: true}, f.c3},
		{"query", f.repo.url + "?keep-git-dir=true#v1-ann", GitOptions{AllowFile: true}, f.c1},
		{"with submodules", f.repo.url, GitOptions{AllowFile: true, KeepGitDir: true}, f.c2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := FetchGit(context.Background(), t.TempDir(), tc.ref, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !res.KeepGitDir {
				t.Fatal("KeepGitDir not reported")
			}
			if fi, err := os.Stat(filepath.Join(res.Dir, ".git")); err != nil || !fi.IsDir() {
				t.Fatalf(".git missing: %v", err)
			}
			head := f.repo.git(time.Time{}, "-C", res.Dir, "rev-parse", "HEAD")
			if head != tc.commit || res.Commit != tc.commit {
				t.Fatalf("HEAD %s, result %s, want %s", head, res.Commit, tc.commit)
			}
			// The checkout is clean: modes and mtimes we set are not content changes.
			if st := f.repo.git(time.Time{}, "--no-optional-locks", "-C", res.Dir, "status", "--porcelain"); st != "" {
				t.Fatalf("checkout not clean:\n%s", st)
			}
			if _, err := os.Stat(filepath.Join(res.Dir, ".git", "FETCH_HEAD")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("FETCH_HEAD kept: %v", err)
			}
			if tc.commit == f.c2 {
				lib := f.repo.git(time.Time{}, "-C", filepath.Join(res.Dir, "vendor", "lib"), "rev-parse", "HEAD")
				if want := f.lib.git(time.Time{}, "rev-parse", "HEAD"); lib != want {
					t.Fatalf("submodule HEAD %s, want %s", lib, want)
				}
			}
		})
	}
	// With a subdir the .git directory is dropped, as BuildKit does.
	res, err := FetchGit(context.Background(), t.TempDir(), f.repo.url+"#main:docs", GitOptions{AllowFile: true, KeepGitDir: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(res.Dir, ".git")); !errors.Is(err, fs.ErrNotExist) || res.KeepGitDir {
		t.Fatalf(".git with a subdir: %v, KeepGitDir %v", err, res.KeepGitDir)
	}
}

func TestFetchGitErrors(t *testing.T) {
	f := newFixture(t)
	u := f.repo.url
	tests := []struct {
		name, ref string
		opts      GitOptions
		want      []string
	}{
		{"checksum mismatch", u + "#v1", GitOptions{AllowFile: true, Checksum: f.c2}, []string{"ADD " + u + "#v1: checksum mismatch: expected commit " + f.c2 + ", ref resolved to " + f.c1}},
		{"checksum mismatch sha ref", u + "#" + f.c1, GitOptions{AllowFile: true, Checksum: "ffff"}, []string{"checksum mismatch", f.c1}},
		{"checksum conflict", u + "?checksum=abc#v1", GitOptions{AllowFile: true, Checksum: "abd"}, []string{`checksum mismatch "abd" != "abc"`}},
		{"checksum not hex", u + "#v1", GitOptions{AllowFile: true, Checksum: "v1"}, []string{`invalid checksum "v1"`}},
		{"no such ref", u + "#nope", GitOptions{AllowFile: true}, []string{"ADD " + u + "#nope: ", `repository has no ref "nope"`}},
		{"tail match is not a match", u + "#eature", GitOptions{AllowFile: true}, []string{`repository has no ref "eature"`}},
		{"no such commit", u + "#" + strings.Repeat("a", 40), GitOptions{AllowFile: true}, []string{"ADD " + u + "#" + strings.Repeat("a", 40) + ": ", "aaaa"}},
		{"no such repo", "file:///nonexistent/repo.git#main", GitOptions{AllowFile: true}, []string{"ADD file:///nonexistent/repo.git#main: resolving ref"}},
		{"no such subdir", u + "#main:nope", GitOptions{AllowFile: true}, []string{`subdir "nope" not found`}},
		{"subdir through symlink", u + "#main:linkdir", GitOptions{AllowFile: true}, []string{`"linkdir" is not a directory`}},
		{"subdir is a file", u + "#main:README", GitOptions{AllowFile: true}, []string{`"README" is not a directory`}},
		{"file not allowed", u + "#main", GitOptions{}, []string{"file:// repositories are not allowed"}},
		{"option-like ref", u + "#--upload-pack=evil", GitOptions{AllowFile: true}, []string{"invalid git ref"}},
		{"keep-git-dir conflict", u + "?keep-git-dir=false", GitOptions{AllowFile: true, KeepGitDir: true}, []string{"inconsistent keep-git-dir"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			_, err := FetchGit(context.Background(), cache, tc.ref, tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
			if ents, _ := os.ReadDir(filepath.Join(cache, "git", "trees")); len(ents) != 0 {
				t.Fatalf("a failed fetch published %v", ents)
			}
			if ents, _ := os.ReadDir(filepath.Join(cache, "git", "tmp")); len(ents) != 0 {
				t.Fatalf("tmp not cleaned: %v", ents)
			}
		})
	}
}

func TestFetchGitCache(t *testing.T) {
	f := newFixture(t)
	cache := t.TempDir()
	ctx := context.Background()
	ref := f.repo.url + "#feature"
	first, err := FetchGit(ctx, cache, ref, GitOptions{AllowFile: true})
	if err != nil {
		t.Fatal(err)
	}
	second, err := FetchGit(ctx, cache, ref, GitOptions{AllowFile: true})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Fetched || second.Fetched || second.Dir != first.Dir || second.CacheKey() != first.CacheKey() ||
		!second.ModTime.Equal(f.t3) {
		t.Fatalf("unchanged ref not reused:\n%+v\n%+v", first, second)
	}
	// The same commit by sha is the same tree.
	bySHA, err := FetchGit(ctx, cache, f.repo.url+"#"+f.c3, GitOptions{AllowFile: true})
	if err != nil {
		t.Fatal(err)
	}
	if bySHA.Fetched || bySHA.Dir != first.Dir {
		t.Fatalf("same commit by sha not reused: %+v", bySHA)
	}

	// The branch moves: a new commit is fetched.
	f.repo.git(time.Time{}, "checkout", "-q", "feature")
	f.repo.write("feature.txt", "feature v2\n", 0o644)
	t4 := f.t3.Add(time.Hour)
	c4 := f.repo.commit(t4, "feature 2")
	third, err := FetchGit(ctx, cache, ref, GitOptions{AllowFile: true})
	if err != nil {
		t.Fatal(err)
	}
	if third.Commit != c4 || !third.Fetched || third.Dir == first.Dir || third.CacheKey() == first.CacheKey() {
		t.Fatalf("moved ref: %+v", third)
	}
	if got := readFile(t, filepath.Join(third.Dir, "feature.txt")); got != "feature v2\n" {
		t.Fatalf("feature.txt = %q", got)
	}
	// The older tree is untouched.
	if got := readFile(t, filepath.Join(first.Dir, "feature.txt")); got != "feature\n" {
		t.Fatalf("old tree changed: %q", got)
	}

	// Different subdir / keep-git-dir / submodules are different trees and keys.
	keys := map[string]bool{first.CacheKey(): true}
	for _, v := range []struct {
		ref  string
		opts GitOptions
	}{
		{f.repo.url + "#" + f.c3 + ":docs", GitOptions{AllowFile: true}},
		{f.repo.url + "#" + f.c3, GitOptions{AllowFile: true, KeepGitDir: true}},
		{f.repo.url + "#" + f.c3, GitOptions{AllowFile: true, SkipSubmodules: true}},
	} {
		r, err := FetchGit(ctx, cache, v.ref, v.opts)
		if err != nil {
			t.Fatal(err)
		}
		if keys[r.CacheKey()] || r.Dir == first.Dir {
			t.Fatalf("%s %+v shares a key or tree", v.ref, v.opts)
		}
		keys[r.CacheKey()] = true
	}
}

func TestFetchGitDeterministic(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var digests []string
	for _, ref := range []string{f.repo.url + "#v1", f.repo.url + "#v1-ann", f.repo.url + "#" + f.c1} {
		res, err := FetchGit(ctx, t.TempDir(), ref, GitOptions{AllowFile: true})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, treeDigest(t, res.Dir))
	}
	if digests[0] != digests[1] || digests[1] != digests[2] {
		t.Fatalf("same commit, different trees: %v", digests)
	}
	// And a different commit differs.
	res, err := FetchGit(ctx, t.TempDir(), f.repo.url+"#feature", GitOptions{AllowFile: true})
	if err != nil {
		t.Fatal(err)
	}
	if treeDigest(t, res.Dir) == digests[0] {
		t.Fatal("different commits, same tree digest")
	}
}

func TestFetchGitCancelled(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cache := t.TempDir()
	_, err := FetchGit(ctx, cache, f.repo.url, GitOptions{AllowFile: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(cache, "git", "trees")); len(ents) != 0 {
		t.Fatalf("published after cancel: %v", ents)
	}
}

func TestFetchGitSHA256Repository(t *testing.T) {
	r := newTestRepo(t, "repo256")
	if err := os.RemoveAll(r.dir); err != nil {
		t.Fatal(err)
	}
	r.git(time.Time{}, "init", "-q", "-b", "main", "--object-format=sha256", r.dir)
	r.write("a.txt", "sha256 world\n", 0o644)
	when := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	c := r.commit(when, "one")
	if len(c) != 64 {
		t.Skipf("git made a %d-digit object name", len(c))
	}
	for _, ref := range []string{r.url, r.url + "#" + c} {
		res, err := FetchGit(context.Background(), t.TempDir(), ref, GitOptions{AllowFile: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Commit != c || readFile(t, filepath.Join(res.Dir, "a.txt")) != "sha256 world\n" {
			t.Fatalf("%s: %+v", ref, res)
		}
		checkMtimes(t, res.Dir, when)
	}
}

func TestFetchGitRedactsPassword(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	// Port 1 on loopback refuses at once: no network is involved.
	_, err := FetchGit(context.Background(), t.TempDir(), "https://user:hunter2@127.0.0.1:1/r.git#main", GitOptions{})
	if err == nil {
		t.Fatal("fetch from a closed port succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.HasPrefix(err.Error(), "ADD https://user:xxxxx@127.0.0.1:1/r.git#main: ") {
		t.Fatalf("error %v", err)
	}
}
