package container

import (
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
)

func TestParseVolume(t *testing.T) {
	tests := []struct {
		in      string
		want    MountSpec
		wantErr bool
	}{
		{"/host:/ctr", MountSpec{Type: MountBind, Source: "/host", Destination: "/ctr"}, false},
		{"/host/../x/:/ctr:ro", MountSpec{Type: MountBind, Source: "/x", Destination: "/ctr", ReadOnly: true}, false},
		{"/host:/ctr:rw", MountSpec{Type: MountBind, Source: "/host", Destination: "/ctr"}, false},
		{"data:/var/lib/data", MountSpec{Type: MountVolume, Source: "data", Destination: "/var/lib/data"}, false},
		{"my-vol.1:/v:ro", MountSpec{Type: MountVolume, Source: "my-vol.1", Destination: "/v", ReadOnly: true}, false},
		{"/anon", MountSpec{Type: MountVolume, Destination: "/anon"}, false},
		{"rel/path:/ctr", MountSpec{}, true},
		{"./rel:/ctr", MountSpec{}, true},
		{"data:relative", MountSpec{}, true},
		{":/ctr", MountSpec{}, true},
		{"/host:/ctr:z", MountSpec{}, true},
		{"a:/ctr", MountSpec{}, true}, // volume names have two characters at least
		{"-bad:/ctr", MountSpec{}, true},
		{"/a:/b:ro:extra", MountSpec{}, true},
		{"anon-relative", MountSpec{}, true},
	}
	for _, tc := range tests {
		got, err := ParseVolume(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseVolume(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseVolume(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseMountAndTmpfs(t *testing.T) {
	tests := []struct {
		in      string
		tmpfs   bool
		want    MountSpec
		wantErr bool
	}{
		{"type=bind,source=/h,target=/c,readonly", false, MountSpec{Type: MountBind, Source: "/h", Destination: "/c", ReadOnly: true}, false},
		{"type=bind,src=/h,dst=/c,ro=false", false, MountSpec{Type: MountBind, Source: "/h", Destination: "/c"}, false},
		{"type=volume,source=vol,destination=/c", false, MountSpec{Type: MountVolume, Source: "vol", Destination: "/c"}, false},
		{"target=/c", false, MountSpec{Type: MountVolume, Destination: "/c"}, false},
		{"type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770", false, MountSpec{Type: MountTmpfs, Destination: "/t", Options: []string{"size=67108864", "mode=1770"}}, false},
		{"type=bind,source=rel,target=/c", false, MountSpec{}, true},
		{"type=tmpfs,source=x,target=/t", false, MountSpec{}, true},
		{"type=nfs,target=/t", false, MountSpec{}, true},
		{"type=bind,source=/h,target=/c,bogus=1", false, MountSpec{}, true},
		{"type=bind,source=/h", false, MountSpec{}, true},
		{"type=tmpfs,target=/t,tmpfs-mode=9", false, MountSpec{}, true},
		{"/run", true, MountSpec{Type: MountTmpfs, Destination: "/run"}, false},
		{"/run:size=1m,ro,noexec", true, MountSpec{Type: MountTmpfs, Destination: "/run", ReadOnly: true, Options: []string{"size=1m", "noexec"}}, false},
		{"run", true, MountSpec{}, true},
	}
	for _, tc := range tests {
		parse := ParseMount
		if tc.tmpfs {
			parse = ParseTmpfs
		}
		got, err := parse(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parse(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"32m", 32 << 20, true},
		{"32M", 32 << 20, true},
		{"32mb", 32 << 20, true},
		{"32MiB", 32 << 20, true},
		{"1g", 1 << 30, true},
		{"1.5k", 1536, true},
		{"100", 100, true},
		{"100b", 100, true},
		{"2t", 2 << 40, true},
		{"", 0, false},
		{"m", 0, false},
		{"-1m", 0, false},
		{"12x", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
		ok   bool
	}{
		{"TERM", syscall.SIGTERM, true},
		{"SIGKILL", syscall.SIGKILL, true},
		{"sigusr1", syscall.SIGUSR1, true},
		{"9", syscall.SIGKILL, true},
		{"0", 0, false},
		{"65", 0, false},
		{"NOPE", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSignal(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseEnv(t *testing.T) {
	t.Setenv("STRATA_PARSE_SET", "from env")
	name := filepath.Join(t.TempDir(), "env")
	content := "# comment\n\nA=1\n  B=two words\nSTRATA_PARSE_SET\nSTRATA_PARSE_UNSET\nC=\n"
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ParseEnvFile(name)
	want := []string{"A=1", "B=two words", "STRATA_PARSE_SET=from env", "C="}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseEnvFile = %q, %v; want %q", got, err, want)
	}
	if err := os.WriteFile(name, []byte("BAD NAME=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseEnvFile(name); err == nil {
		t.Error("ParseEnvFile accepted a name with a space")
	}
	if got := ParseEnv([]string{"X=1", "STRATA_PARSE_SET", "STRATA_PARSE_UNSET", "Y="}); !reflect.DeepEqual(got, []string{"X=1", "STRATA_PARSE_SET=from env", "Y="}) {
		t.Errorf("ParseEnv = %q", got)
	}
}
