package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// GitOptions are the ADD flags that matter to a Git source. Options in the
// URL's query (BuildKit syntax) are merged in; a conflict is an error.
type GitOptions struct {
	// KeepGitDir keeps the .git directory (ADD --keep-git-dir). As in
	// BuildKit it applies only when the whole repository is added: with a
	// subdir the .git directory is never kept.
	KeepGitDir bool
	// Checksum is ADD --checksum for Git: the commit sha (or a prefix of
	// it, as BuildKit allows) the ref must resolve to. For an annotated
	// tag the tag object's sha matches too.
	Checksum string
	// AllowFile accepts file:// remotes (a local repository the builder
	// itself marked as Git; tests). Only then may git use the file
	// protocol, also for submodules.
	AllowFile bool
	// SkipSubmodules leaves submodules out; by default they are checked
	// out recursively, as BuildKit does.
	SkipSubmodules bool
}

// GitResult is a checked-out tree, ready to copy.
type GitResult struct {
	// Dir is the tree (at the subdir, if one was given). It lives in the
	// cache and must not be modified.
	Dir string
	// Commit is the full sha the ref resolved to (for an annotated tag,
	// the commit it points at).
	Commit string
	// Ref is the full ref name the remote resolved ("refs/heads/main",
	// "refs/tags/v1"), or the commit sha when one was asked for.
	Ref string
	// Remote is the repository as given to git, with any password hidden.
	Remote     string
	Subdir     string
	KeepGitDir bool // whether Dir has a .git directory
	Submodules bool // whether submodules were checked out
	// ModTime is the committer time of Commit, set on every entry of Dir.
	ModTime time.Time
	// Fetched is false when the tree came from the cache without a fetch.
	Fetched bool
}

// CacheKey is what the ADD step's cache key should include for this
// source: the tree is a function of the commit, the subdir, whether .git
// is kept (with the remote then, as .git records it) and whether
// submodules are included. The ref name and (without .git) the remote do
// not count: the same commit gives the same tree from any mirror.
func (r GitResult) CacheKey() string {
	return "sha256:" + r.treeKey(true)
}

func (r GitResult) treeKey(full bool) string {
	remote := ""
	if r.KeepGitDir {
		remote = r.Remote
	}
	h := sha256.New()
	fmt.Fprintf(h, "strata/source.git.v1\x00%s\x00%s\x00%t\x00%t\x00%s", r.Commit, r.Subdir, r.KeepGitDir, r.Submodules, remote)
	s := hex.EncodeToString(h.Sum(nil))
	if !full {
		return s[:32]
	}
	return s
}

type gitFetch struct {
	src        GitRef
	label      string // "ADD remote#ref" for messages
	remote     string // redacted
	checksum   string
	keep       bool
	submodules bool
	allowFile  bool
	work       string // temp dir: home/ and repo/
	home       string
	secret     string // the raw remote, replaced in git's output
}

// FetchGit materialises the Git source ref (BuildKit syntax, see GitRef)
// under cacheDir. The ref is resolved with git ls-remote first (a full
// commit sha needs no lookup); the tree for that commit (and subdir,
// keep-git-dir, submodules) is reused from the cache when present, so an
// unchanged ref costs one ls-remote. Otherwise the commit alone is fetched
// (depth 1) into a fresh repository and checked out, submodules updated
// recursively, .git removed unless kept, and every entry given the
// commit's committer time and Git's checkout modes (0644/0755, dirs 0755),
// so the same commit always gives the same tree. git runs with no user or
// system configuration, HOME an empty temp dir, and never prompts.
// Errors start with "ADD <remote>#<ref>:".
func FetchGit(ctx context.Context, cacheDir, ref string, opts GitOptions) (GitResult, error) {
	src, err := ParseGitRef(ref, opts.AllowFile)
	if err != nil {
		return GitResult{}, fmt.Errorf("ADD: %w", err)
	}
	f := &gitFetch{src: src, allowFile: opts.AllowFile, secret: src.Remote}
	f.remote = redactedRemote(src.Remote)
	f.label = "ADD " + f.remote
	if src.Ref != "" {
		f.label += "#" + src.Ref
	}

	f.keep = opts.KeepGitDir
	if src.KeepGitDir != nil {
		if opts.KeepGitDir && !*src.KeepGitDir {
			return GitResult{}, f.errorf("inconsistent keep-git-dir configuration")
		}
		f.keep = *src.KeepGitDir
	}
	if src.Subdir != "" {
		f.keep = false
	}
	f.checksum = strings.ToLower(opts.Checksum)
	if src.Checksum != "" {
		q := strings.ToLower(src.Checksum)
		if f.checksum != "" && f.checksum != q {
			return GitResult{}, f.errorf("checksum mismatch %q != %q", opts.Checksum, src.Checksum)
		}
		f.checksum = q
	}
	if f.checksum != "" && (len(f.checksum) > 64 || !isLowerHex(f.checksum)) {
		return GitResult{}, f.errorf("invalid checksum %q: want a hex commit sha or a prefix of one", f.checksum)
	}
	f.submodules = !opts.SkipSubmodules
	if src.Submodules != nil {
		f.submodules = f.submodules && *src.Submodules
	}

	trees := filepath.Join(cacheDir, "git", "trees")
	tmp := filepath.Join(cacheDir, "git", "tmp")
	for _, d := range []string{trees, tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return GitResult{}, f.errorf("%w", err)
		}
	}
	if f.work, err = os.MkdirTemp(tmp, "fetch-"); err != nil {
		return GitResult{}, f.errorf("%w", err)
	}
	defer os.RemoveAll(f.work)
	f.home = filepath.Join(f.work, "home")
	if err := os.Mkdir(f.home, 0o700); err != nil {
		return GitResult{}, f.errorf("%w", err)
	}

	commit, fullRef, err := f.resolve(ctx)
	if err != nil {
		return GitResult{}, err
	}
	res := GitResult{
		Commit:     commit,
		Ref:        fullRef,
		Remote:     f.remote,
		Subdir:     src.Subdir,
		KeepGitDir: f.keep,
		Submodules: f.submodules,
	}
	final := filepath.Join(trees, res.treeKey(false))
	if fi, err := os.Lstat(final); err == nil && fi.IsDir() {
		res.Dir, res.ModTime = final, fi.ModTime()
		return res, nil
	}

	out, mtime, err := f.checkout(ctx, commit, fullRef)
	if err != nil {
		return GitResult{}, err
	}
	if _, err := publishDir(out, final); err != nil {
		return GitResult{}, f.errorf("storing checkout: %w", err)
	}
	res.Dir, res.ModTime, res.Fetched = final, mtime, true
	return res, nil
}

func (f *gitFetch) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{f.label}, args...)...)
}

// resolve turns the ref into a commit with git ls-remote, matching the
// way BuildKit (and git checkout) picks among refs: an exact refs/ name,
// then a branch, then a tag (peeled when annotated).
func (f *gitFetch) resolve(ctx context.Context) (commit, fullRef string, err error) {
	ref := f.src.Ref
	if isCommitSHA(strings.ToLower(ref)) {
		commit = strings.ToLower(ref)
		if f.checksum != "" && !strings.HasPrefix(commit, f.checksum) {
			return "", "", f.errorf("checksum mismatch: expected commit %s, ref is %s", f.checksum, commit)
		}
		return commit, commit, nil
	}
	var outp string
	if ref == "" {
		outp, err = f.git(ctx, f.work, "ls-remote", "--symref", "--", f.src.Remote, "HEAD")
	} else {
		outp, err = f.git(ctx, f.work, "ls-remote", "--", f.src.Remote, ref, ref+"^{}")
	}
	if err != nil {
		return "", "", f.errorf("resolving ref: %w", err)
	}
	var (
		exact     = "refs/" + strings.TrimPrefix(ref, "refs/")
		head      = "refs/heads/" + strings.TrimPrefix(ref, "refs/heads/")
		tag       = "refs/tags/" + strings.TrimPrefix(ref, "refs/tags/")
		peeledTag = tag + "^{}"
	)
	var exactSHA, headSHA, tagSHA, peeledSHA, symref string
	for line := range strings.Lines(outp) {
		sha, name, ok := strings.Cut(strings.TrimRight(line, "\n"), "\t")
		if !ok {
			continue
		}
		if ref == "" {
			if target, ok := strings.CutPrefix(sha, "ref: "); ok && name == "HEAD" {
				symref = target
			} else if name == "HEAD" {
				exactSHA = sha
			}
			continue
		}
		switch name {
		case exact:
			exactSHA = sha
		case head:
			headSHA = sha
		case tag:
			tagSHA = sha
		case peeledTag:
			peeledSHA = sha
		}
	}
	var tagObject string
	switch {
	case ref == "":
		commit, fullRef = exactSHA, symref
		if fullRef == "" {
			fullRef = "HEAD"
		}
	case exactSHA != "" && exact != tag:
		commit, fullRef = exactSHA, exact
	case headSHA != "":
		commit, fullRef = headSHA, head
	case tagSHA != "":
		commit, fullRef = tagSHA, tag
		if peeledSHA != "" {
			tagObject, commit = tagSHA, peeledSHA
		}
	}
	if commit == "" {
		what := "ref " + strconv.Quote(ref)
		if ref == "" {
			what = "HEAD"
		}
		return "", "", f.errorf("repository has no %s", what)
	}
	if !isCommitSHA(commit) {
		return "", "", f.errorf("remote gave an invalid object name %q", commit)
	}
	if f.checksum != "" && !strings.HasPrefix(commit, f.checksum) &&
		(tagObject == "" || !strings.HasPrefix(tagObject, f.checksum)) {
		return "", "", f.errorf("checksum mismatch: expected commit %s, ref resolved to %s", f.checksum, commit)
	}
	return commit, fullRef, nil
}

// checkout fetches commit into a new repository under the work dir and
// returns the finished tree (not yet published) and the commit time.
func (f *gitFetch) checkout(ctx context.Context, commit, fullRef string) (string, time.Time, error) {
	repo := filepath.Join(f.work, "repo")
	initArgs := []string{"init", "-q"}
	if len(commit) == 64 {
		// A SHA-256 repository can only be fetched into one.
		initArgs = append(initArgs, "--object-format=sha256")
	}
	if _, err := f.git(ctx, f.work, append(initArgs, repo)...); err != nil {
		return "", time.Time{}, f.errorf("%w", err)
	}
	if _, err := f.git(ctx, repo, "remote", "add", "origin", f.src.Remote); err != nil {
		return "", time.Time{}, f.errorf("%w", err)
	}
	if err := f.fetch(ctx, repo, commit, fullRef); err != nil {
		return "", time.Time{}, err
	}
	if _, err := f.git(ctx, repo, "checkout", "-q", "--detach", commit, "--"); err != nil {
		return "", time.Time{}, f.errorf("checkout of %s: %w", commit, err)
	}
	if f.submodules {
		if fi, err := os.Lstat(filepath.Join(repo, ".gitmodules")); err == nil && fi.Mode().IsRegular() {
			if _, err := f.git(ctx, repo, "submodule", "update", "--init", "--recursive", "--depth", "1"); err != nil {
				return "", time.Time{}, f.errorf("updating submodules: %w", err)
			}
		}
	}
	ct, err := f.git(ctx, repo, "show", "-s", "--format=%ct", commit, "--")
	if err != nil {
		return "", time.Time{}, f.errorf("%w", err)
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(ct), 10, 64)
	if err != nil {
		return "", time.Time{}, f.errorf("commit time %q: %w", strings.TrimSpace(ct), err)
	}
	mtime := time.Unix(secs, 0)

	if f.keep {
		// What stays in .git should not carry a password nor the fetch.
		if f.remote != f.src.Remote {
			if _, err := f.git(ctx, repo, "remote", "set-url", "origin", f.remote); err != nil {
				return "", time.Time{}, f.errorf("%w", err)
			}
		}
		if _, err := f.git(ctx, repo, "reflog", "expire", "--all", "--expire=now"); err != nil {
			return "", time.Time{}, f.errorf("%w", err)
		}
		if err := os.Remove(filepath.Join(repo, ".git", "FETCH_HEAD")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", time.Time{}, f.errorf("%w", err)
		}
	} else if err := removeGitEntries(ctx, repo); err != nil {
		return "", time.Time{}, f.errorf("%w", err)
	}

	out := repo
	if f.src.Subdir != "" {
		if err := checkSubdir(repo, f.src.Subdir); err != nil {
			return "", time.Time{}, f.errorf("%w", err)
		}
		out = filepath.Join(repo, filepath.FromSlash(f.src.Subdir))
	}
	if err := normaliseTree(ctx, out, mtime); err != nil {
		return "", time.Time{}, f.errorf("%w", err)
	}
	return out, mtime, nil
}

// fetch gets commit into repo: by sha at depth 1 (what GitHub and
// protocol v2 servers allow), else the resolved ref at depth 1, else
// (an old server, or a ref that moved since ls-remote) every branch and
// tag in full; then the commit must be there.
func (f *gitFetch) fetch(ctx context.Context, repo, commit, fullRef string) error {
	_, firstErr := f.git(ctx, repo, "fetch", "-q", "--depth", "1", "--no-tags", "origin", commit)
	if firstErr == nil && f.hasCommit(ctx, repo, commit) {
		return nil
	}
	if strings.HasPrefix(fullRef, "refs/") {
		if _, err := f.git(ctx, repo, "fetch", "-q", "--depth", "1", "--no-tags", "origin", fullRef); err == nil && f.hasCommit(ctx, repo, commit) {
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return f.errorf("%w", err)
	}
	_, err := f.git(ctx, repo, "fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
	if err == nil && f.hasCommit(ctx, repo, commit) {
		return nil
	}
	if err == nil {
		err = firstErr
	}
	if err == nil {
		return f.errorf("commit %s not found in repository", commit)
	}
	return f.errorf("fetching %s: %w", commit, err)
}

func (f *gitFetch) hasCommit(ctx context.Context, repo, commit string) bool {
	_, err := f.git(ctx, repo, "cat-file", "-e", commit+"^{commit}")
	return err == nil
}

// checkSubdir makes sure every component of sub is a real directory of
// the checkout: a symlink could lead the tree out of the repository.
func checkSubdir(repo, sub string) error {
	p := repo
	for part := range strings.SplitSeq(sub, "/") {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("subdir %q not found in repository", sub)
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("subdir %q: %q is not a directory", sub, part)
		}
	}
	return nil
}

// git runs git in dir with a clean environment and returns its stdout.
func (f *gitFetch) git(ctx context.Context, dir string, args ...string) (string, error) {
	fileAllow := "never"
	if f.allowFile {
		fileAllow = "always"
	}
	full := []string{
		"-c", "protocol.file.allow=" + fileAllow,
		"-c", "init.defaultBranch=main",
		"-c", "advice.detachedHead=false",
		// No background gc or maintenance writing into a dir being renamed.
		"-c", "gc.auto=0",
		"-c", "maintenance.auto=false",
		"-c", "core.hooksPath=/dev/null",
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Dir = dir
	cmd.Env = f.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// git's helpers (remote-https, ssh, upload-pack) share its process
	// group; cancellation kills them all so nothing keeps the pipes open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return "", ctxErr
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if f.secret != f.remote {
			msg = strings.ReplaceAll(msg, f.secret, f.remote)
		}
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		if msg == "" {
			return "", fmt.Errorf("git %s: %w", args[0], err)
		}
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, msg)
	}
	return stdout.String(), nil
}

// env is git's whole environment: no user or system configuration, an
// empty HOME, no prompts; only what reaching a remote needs is passed on.
func (f *gitFetch) env() []string {
	env := []string{
		"HOME=" + f.home,
		"XDG_CONFIG_HOME=" + f.home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_SSH_COMMAND=ssh -o BatchMode=yes",
		"LC_ALL=C",
	}
	for _, k := range []string{
		"PATH", "SSH_AUTH_SOCK", "SSL_CERT_FILE", "SSL_CERT_DIR",
		"http_proxy", "https_proxy", "no_proxy", "all_proxy",
		"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
	} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
