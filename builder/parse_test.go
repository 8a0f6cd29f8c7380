package builder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCacheSpec(t *testing.T) {
	tests := []struct {
		in      string
		export  bool
		want    CacheSpec
		wantErr string
	}{
		{in: "reg.example/cache:1", want: CacheSpec{Type: "registry", Ref: "reg.example/cache:1", Mode: "min"}},
		{in: "type=registry,ref=r/c:x,mode=max", export: true, want: CacheSpec{Type: "registry", Ref: "r/c:x", Mode: "max"}},
		{in: "type=local,dest=/tmp/c", export: true, want: CacheSpec{Type: "local", Dir: "/tmp/c", Mode: "min"}},
		{in: "type=local,src=/tmp/c", want: CacheSpec{Type: "local", Dir: "/tmp/c", Mode: "min"}},
		{in: "type=local", export: true, wantErr: "needs dest=DIR"},
		{in: "type=local", wantErr: "needs src=DIR"},
		{in: "type=registry", wantErr: "needs ref=REF"},
		{in: "type=gha,ref=x", wantErr: "unknown cache type"},
		{in: "type=registry,ref=x,mode=all", wantErr: "invalid cache mode"},
		{in: "type=registry,ref=x,bogus=1", wantErr: "unknown cache option"},
		{in: "type=registry,ref=x,oops", wantErr: "want key=value"},
	}
	for _, tc := range tests {
		got, err := ParseCacheSpec(tc.in, tc.export)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseOutput(t *testing.T) {
	tests := []struct {
		in      string
		want    Output
		image   bool
		wantErr string
	}{
		{in: "out/dir", want: Output{Type: "local", Dest: "out/dir"}},
		{in: "type=oci,dest=/tmp/l", want: Output{Type: "oci", Dest: "/tmp/l"}, image: true},
		{in: "type=docker,dest=i.tar", want: Output{Type: "docker", Dest: "i.tar"}, image: true},
		{in: "type=local,dest=d", want: Output{Type: "local", Dest: "d"}},
		{in: "type=tar,dest=fs.tar", want: Output{Type: "tar", Dest: "fs.tar"}},
		{in: "type=registry,dest=x", wantErr: "type must be oci, docker, local or tar"},
		{in: "type=tar", wantErr: "dest is required"},
		{in: "type=tar,dest=x,oops", wantErr: "is not key=value"},
		{in: "type=tar,dest=x,name=y", wantErr: `unknown key "name"`},
	}
	for _, tc := range tests {
		got, err := ParseOutput(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want || got.IsImage() != tc.image {
			t.Errorf("%q: got %+v (image %v), %v; want %+v (image %v)", tc.in, got, got.IsImage(), err, tc.want, tc.image)
		}
	}
}

func TestParseSecret(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STRATA_TEST_SECRET", "v")
	tests := []struct {
		in      string
		id      string
		want    Secret
		wantErr string
	}{
		{in: "id=a,src=" + file, id: "a", want: Secret{File: file}},
		{in: "id=a,source=" + file + ",type=file", id: "a", want: Secret{File: file}},
		{in: "id=b,env=STRATA_TEST_SECRET", id: "b", want: Secret{Env: "STRATA_TEST_SECRET"}},
		{in: "id=STRATA_TEST_SECRET", id: "STRATA_TEST_SECRET", want: Secret{Env: "STRATA_TEST_SECRET"}},
		{in: "id=c,type=env,src=STRATA_TEST_SECRET", id: "c", want: Secret{Env: "STRATA_TEST_SECRET"}},
		{in: "src=" + file, wantErr: "id is required"},
		{in: "id=a,src=/nonexistent/secret", wantErr: "no such file"},
		{in: "id=a,src=" + file + ",env=X", wantErr: "not both"},
		{in: "id=a,type=ssh", wantErr: "type must be file or env"},
		{in: "id=a,color=red", wantErr: "unknown field"},
	}
	for _, tc := range tests {
		id, got, err := ParseSecret(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || id != tc.id || got != tc.want {
			t.Errorf("%q: got %q %+v %v; want %q %+v", tc.in, id, got, err, tc.id, tc.want)
		}
	}
}

func TestURLBase(t *testing.T) {
	for in, want := range map[string]string{
		"https://example.com/a/b.tar.gz?x=1": "b.tar.gz",
		"https://example.com/":               "__unnamed__",
		"https://example.com":                "__unnamed__",
		"http://h/dir/file":                  "file",
	} {
		if got := urlBase(in); got != want {
			t.Errorf("urlBase(%q) = %q, want %q", in, got, want)
		}
	}
}
