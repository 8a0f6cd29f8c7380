package container

import (
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/netns"
	"github.com/strata-build/strata/registry"
)

func testImage(c v1.Config) *registry.Image {
	return &registry.Image{Config: &v1.ConfigFile{Config: c}}
}

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestMakeConfigCommand(t *testing.T) {
	tests := []struct {
		name       string
		image      v1.Config
		entrypoint []string
		cmd        []string
		want       []string
		wantErr    bool
	}{
		{"image cmd", v1.Config{Cmd: []string{"sh"}}, nil, nil, []string{"sh"}, false},
		{"image entrypoint and cmd", v1.Config{Entrypoint: []string{"/ep"}, Cmd: []string{"a"}}, nil, nil, []string{"/ep", "a"}, false},
		{"args replace cmd", v1.Config{Entrypoint: []string{"/ep"}, Cmd: []string{"a"}}, nil, []string{"b", "c"}, []string{"/ep", "b", "c"}, false},
		{"entrypoint drops image cmd", v1.Config{Entrypoint: []string{"/ep"}, Cmd: []string{"a"}}, []string{"/other"}, nil, []string{"/other"}, false},
		{"entrypoint with args", v1.Config{Cmd: []string{"a"}}, []string{"/other"}, []string{"x"}, []string{"/other", "x"}, false},
		{"empty entrypoint clears", v1.Config{Entrypoint: []string{"/ep"}, Cmd: []string{"a"}}, []string{}, []string{"ls"}, []string{"ls"}, false},
		{"nothing to run", v1.Config{}, nil, nil, nil, true},
		{"cleared and nothing given", v1.Config{Entrypoint: []string{"/ep"}}, []string{}, nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := makeConfig(testID, Options{Entrypoint: tc.entrypoint, Cmd: tc.cmd}, testImage(tc.image))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if err == nil && !reflect.DeepEqual(cfg.Args, tc.want) {
				t.Errorf("args %q, want %q", cfg.Args, tc.want)
			}
		})
	}
}

func TestMakeConfigEnvAndDefaults(t *testing.T) {
	img := testImage(v1.Config{
		Cmd: []string{"sh"}, Env: []string{"A=image", "B=image"}, WorkingDir: "/app", User: "app", StopSignal: "SIGQUIT",
		Volumes: map[string]struct{}{"/data": {}, "/covered": {}},
	})
	cfg, err := makeConfig(testID, Options{
		Env:    []string{"B=flag", "C=flag"},
		Tty:    true,
		Mounts: []MountSpec{{Type: MountBind, Source: "/h", Destination: "/covered/"}, {Type: MountTmpfs, Destination: "/a/b/c"}},
	}, img)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := []string{"HOSTNAME=0123456789ab", "A=image", "B=flag", "TERM=xterm", "C=flag",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if !reflect.DeepEqual(cfg.Env, wantEnv) {
		t.Errorf("env %q, want %q", cfg.Env, wantEnv)
	}
	if cfg.Hostname != "0123456789ab" || cfg.WorkingDir != "/app" || cfg.User != "app" || cfg.StopSignal != "SIGQUIT" {
		t.Errorf("defaults from the image: %+v", cfg)
	}
	var dests []string
	for _, m := range cfg.Mounts {
		dests = append(dests, m.Destination)
		if m.Destination == "/data" && (m.Type != MountVolume || !m.Anonymous || !strings.HasPrefix(m.Source, testID)) {
			t.Errorf("the image's VOLUME /data got %+v, want an anonymous volume", m)
		}
	}
	// Parents first; the image's /covered is covered by the bind mount.
	if want := []string{"/covered", "/data", "/a/b/c"}; !reflect.DeepEqual(dests, want) {
		t.Errorf("mounts %q, want %q", dests, want)
	}

	cfg, err = makeConfig(testID, Options{WorkingDir: "/w", User: "0", Hostname: "h", StopSignal: "KILL", Env: []string{"PATH=/bin"}}, img)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WorkingDir != "/w" || cfg.User != "0" || cfg.Hostname != "h" || cfg.StopSignal != "KILL" || cfg.Env[0] != "HOSTNAME=h" || cfg.Env[len(cfg.Env)-1] != "PATH=/bin" {
		t.Errorf("options did not win: %+v", cfg)
	}
	if _, err := makeConfig(testID, Options{WorkingDir: "rel"}, img); err == nil {
		t.Error("a relative working dir was accepted")
	}
	if _, err := makeConfig(testID, Options{Mounts: []MountSpec{{Type: MountTmpfs, Destination: "/"}}}, img); err == nil {
		t.Error("a mount over / was accepted")
	}
	cfg, err = makeConfig(testID, Options{Network: netns.ModeHost}, img)
	if err != nil || cfg.Hostname == "0123456789ab" || cfg.Hostname == "" {
		t.Errorf("host network hostname %q (%v), want the host's", cfg.Hostname, err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "C"}, []string{"B=3", "C=4", "D=5", "A=6"})
	if want := []string{"A=6", "B=3", "C=4", "D=5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("mergeEnv = %q, want %q", got, want)
	}
}
