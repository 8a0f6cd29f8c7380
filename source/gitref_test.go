package source

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := map[string]Kind{
		"https://github.com/moby/buildkit.git":            KindGit,
		"https://github.com/moby/buildkit.git#v0.10:docs": KindGit,
		"http://example.com/repo.git?ref=main":            KindGit,
		"https://example.com/file.tar.gz":                 KindURL,
		"HTTPS://example.com/file":                        KindURL,
		"https://example.com/repo.git/archive.zip":        KindURL,
		"git@github.com:moby/buildkit.git":                KindGit,
		"git@github.com:moby/buildkit#main":               KindGit,
		"ssh://git@example.com:2222/repo":                 KindGit,
		"git://example.com/repo":                          KindGit,
		"file:///srv/repo":                                KindLocal,
		"ftp://example.com/x":                             KindLocal,
		"src/main.go":                                     KindLocal,
		"./repo.git":                                      KindLocal,
		"github.com/moby/buildkit":                        KindLocal,
		"user@host":                                       KindLocal,
	}
	for in, want := range tests {
		if got := Classify(in); got != want {
			t.Errorf("Classify(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParseGitRef(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		in        string
		allowFile bool
		want      GitRef
		wantErr   string
	}{
		{in: "https://github.com/moby/buildkit.git", want: GitRef{Remote: "https://github.com/moby/buildkit.git"}},
		{in: "https://github.com/moby/buildkit.git#v0.14.1", want: GitRef{Remote: "https://github.com/moby/buildkit.git", Ref: "v0.14.1"}},
		{in: "https://github.com/moby/buildkit.git#v0.14.1:docs", want: GitRef{Remote: "https://github.com/moby/buildkit.git", Ref: "v0.14.1", Subdir: "docs"}},
		{in: "https://github.com/moby/buildkit.git#feature/x:/a/../b/", want: GitRef{Remote: "https://github.com/moby/buildkit.git", Ref: "feature/x", Subdir: "b"}},
		{in: "https://github.com/moby/buildkit.git#:../../etc", want: GitRef{Remote: "https://github.com/moby/buildkit.git", Subdir: "etc"}},
		{in: "https://github.com/moby/buildkit.git#HEAD", want: GitRef{Remote: "https://github.com/moby/buildkit.git"}},
		{in: "git@github.com:moby/buildkit.git#v0.14.1:docs", want: GitRef{Remote: "git@github.com:moby/buildkit.git", Ref: "v0.14.1", Subdir: "docs"}},
		{in: "git@github.com:moby/buildkit.git?branch=main&keep-git-dir", want: GitRef{Remote: "git@github.com:moby/buildkit.git", Ref: "refs/heads/main", KeepGitDir: &yes}},
		{in: "ssh://git@example.com:2222/r.git#main", want: GitRef{Remote: "ssh://git@example.com:2222/r.git", Ref: "main"}},
		{in: "git://example.com/r#v1", want: GitRef{Remote: "git://example.com/r", Ref: "v1"}},
		{in: "https://example.com/r.git?tag=v1&subdir=docs&checksum=abc123&submodules=false", want: GitRef{Remote: "https://example.com/r.git", Ref: "refs/tags/v1", Subdir: "docs", Checksum: "abc123", Submodules: &no}},
		{in: "https://example.com/r.git?ref=main#main", want: GitRef{Remote: "https://example.com/r.git", Ref: "main"}},
		{in: "https://example.com/r.git?mtime=commit", want: GitRef{Remote: "https://example.com/r.git"}},
		{in: "file:///srv/repo#main", allowFile: true, want: GitRef{Remote: "file:///srv/repo", Ref: "main"}},
		{in: "file:///srv/repo#main", wantErr: "file:// repositories are not allowed"},
		{in: "https://example.com/r.git?ref=a#b", wantErr: "ref conflicts"},
		{in: "https://example.com/r.git?tag=a&branch=b", wantErr: "branch conflicts with tag"},
		{in: "https://example.com/r.git?subdir=a#:b", wantErr: "subdir conflicts"},
		{in: "https://example.com/r.git?bogus=1", wantErr: `unexpected query "bogus"`},
		{in: "https://example.com/r.git?keep-git-dir=maybe", wantErr: "invalid keep-git-dir"},
		{in: "https://example.com/r.git?mtime=now", wantErr: "invalid mtime"},
		{in: "https://example.com/r.git#-oProxyCommand=x", wantErr: "invalid git ref"},
		{in: "https://example.com/r.git#a..b", wantErr: "invalid git ref"},
		{in: "https://example.com/r.git#a b", wantErr: "invalid git ref"},
		{in: "https://example.com/r.git#v*", wantErr: "invalid git ref"},
		{in: "https://user:hunter2@example.com/r.git#a..b", wantErr: "invalid git ref"},
		{in: "ftp://example.com/r.git", wantErr: "unsupported protocol"},
		{in: "https:///r.git", wantErr: "no host"},
		{in: "https://example.com", wantErr: "no repository path"},
		{in: "git@github.com:", wantErr: "no repository path"},
		{in: "/local/path", wantErr: "not a git URL"},
	}
	for _, tc := range tests {
		got, err := ParseGitRef(tc.in, tc.allowFile)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseGitRef(%q): error %v, want %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("ParseGitRef(%q): error leaks the password: %v", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseGitRef(%q): %v", tc.in, err)
			continue
		}
		if got.Remote != tc.want.Remote || got.Ref != tc.want.Ref || got.Subdir != tc.want.Subdir ||
			got.Checksum != tc.want.Checksum || !eqBoolPtr(got.KeepGitDir, tc.want.KeepGitDir) ||
			!eqBoolPtr(got.Submodules, tc.want.Submodules) {
			t.Errorf("ParseGitRef(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func eqBoolPtr(a, b *bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
