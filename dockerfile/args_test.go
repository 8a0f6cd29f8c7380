package dockerfile

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// mustPlan parses and plans src, failing the test on error.
func mustPlan(t *testing.T, src string, opts Options) *Plan {
	t.Helper()
	if opts.Resolver == nil {
		opts.Resolver = &fakeResolver{}
	}
	p, err := planBytes([]byte(src), opts)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return p
}

// planError parses and plans src and returns the *Error it must fail with.
func planError(t *testing.T, src string, opts Options) *Error {
	t.Helper()
	if opts.Resolver == nil {
		opts.Resolver = &fakeResolver{}
	}
	_, err := planBytes([]byte(src), opts)
	if err == nil {
		t.Fatalf("plan succeeded, want an error")
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is %T, not *Error", err, err)
	}
	return e
}

// lastRun is the last RUN step of the target stage.
func lastRun(t *testing.T, p *Plan) *Step {
	t.Helper()
	for i := len(p.Target.Steps) - 1; i >= 0; i-- {
		if st := p.Target.Steps[i]; st.Kind == Run {
			return st
		}
	}
	t.Fatal("no RUN step")
	return nil
}

func envValue(env []string, k string) (string, bool) {
	for _, e := range env {
		if key, v, _ := strings.Cut(e, "="); key == k {
			return v, true
		}
	}
	return "", false
}

func TestArgScoping(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		args   map[string]string
		want   map[string]string // in the last RUN's env
		absent []string          // not in the last RUN's env
		cfgEnv []string          // Config.Env besides PATH
	}{
		{
			name:   "global not visible until redeclared",
			src:    "ARG A=1\nARG B=2\nFROM busybox\nARG B\nRUN x",
			want:   map[string]string{"B": "2"},
			absent: []string{"A"},
		},
		{
			name: "build arg overrides default",
			src:  "FROM busybox\nARG A=def\nRUN x",
			args: map[string]string{"A": "cli"},
			want: map[string]string{"A": "cli"},
		},
		{
			name: "build arg overrides global default",
			src:  "ARG A=def\nFROM busybox\nARG A\nRUN x",
			args: map[string]string{"A": "cli"},
			want: map[string]string{"A": "cli"},
		},
		{
			name:   "declared without value is unset",
			src:    "FROM busybox\nARG A\nARG B=\nRUN x",
			want:   map[string]string{"B": ""},
			absent: []string{"A"},
		},
		{
			name:   "undeclared build arg invisible",
			src:    "FROM busybox\nRUN x",
			args:   map[string]string{"U": "1"},
			absent: []string{"U"},
		},
		{
			name: "several per line, default sees earlier ones",
			src:  "FROM busybox\nARG a=1 b=${a}2\nRUN x",
			want: map[string]string{"a": "1", "b": "12"},
		},
		{
			name:   "ENV after ARG wins",
			src:    "FROM busybox\nARG A=arg\nENV A=env\nRUN x",
			want:   map[string]string{"A": "env"},
			cfgEnv: []string{"A=env"},
		},
		{
			// BuildKit: a later ARG replaces the value RUN sees, not the config.
			name:   "ARG after ENV sets the RUN value",
			src:    "FROM busybox\nENV A=env\nARG A=arg\nRUN x",
			want:   map[string]string{"A": "arg"},
			cfgEnv: []string{"A=env"},
		},
		{
			name: "automatic args need a declaration in a stage",
			src:  "FROM busybox\nARG TARGETARCH\nARG TARGETPLATFORM\nRUN x",
			want: map[string]string{"TARGETARCH": "arm64", "TARGETPLATFORM": "linux/arm64"},
		},
		{
			name:   "automatic args are not implicit",
			src:    "FROM busybox\nRUN x",
			absent: []string{"TARGETARCH", "BUILDPLATFORM"},
		},
		{
			name: "global default expands earlier globals",
			src:  "ARG A=x\nARG B=${A}y\nFROM busybox\nARG B\nRUN x",
			want: map[string]string{"B": "xy"},
		},
		{
			name: "inherited by child stage",
			src:  "FROM busybox AS a\nARG N=base\nFROM a\nRUN x",
			want: map[string]string{"N": "base"},
		},
		{
			name:   "ARG names are not expanded",
			src:    "FROM busybox\nENV src=f\nARG ${src}=v\nRUN x",
			args:   map[string]string{"f": "cli"},
			want:   map[string]string{"${src}": "v"},
			absent: []string{"f"},
			cfgEnv: []string{"src=f"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPlan(t, tc.src, Options{BuildArgs: tc.args, Platform: "linux/arm64"})
			run := lastRun(t, p)
			for k, v := range tc.want {
				got, ok := envValue(run.Env, k)
				if !ok || got != v {
					t.Errorf("%s = %q (set %v), want %q; env %q", k, got, ok, v, run.Env)
				}
			}
			for _, k := range tc.absent {
				if v, ok := envValue(run.Env, k); ok {
					t.Errorf("%s=%q present, want absent", k, v)
				}
			}
			// Build args never reach the image config.
			wantCfg := append([]string{"PATH=" + defaultPath}, tc.cfgEnv...)
			if got := p.Target.Config.Config.Env; !slices.Equal(got, wantCfg) {
				t.Errorf("Config.Env %q, want %q", got, wantCfg)
			}
		})
	}
}

func TestMetaArgsInFrom(t *testing.T) {
	r := &fakeResolver{}
	p := mustPlan(t, "ARG IMG=busy\nARG TAG\nFROM ${IMG}box:${TAG:-latest}\nFROM ${IMG}box AS b\nRUN x",
		Options{Resolver: r, Target: "b"})
	if p.Target.BaseImage != "busybox" {
		t.Errorf("BaseImage %q", p.Target.BaseImage)
	}
	if !slices.Equal(r.calls, []string{"busybox"}) {
		t.Errorf("resolver calls %q, want only the target's base", r.calls)
	}
	p = mustPlan(t, "ARG IMG=busy\nARG TAG\nFROM ${IMG}box:${TAG:-latest}", Options{BuildArgs: map[string]string{"IMG": "busy"}})
	if p.Target.BaseImage != "busybox:latest" {
		t.Errorf("BaseImage %q", p.Target.BaseImage)
	}
	p = mustPlan(t, "FROM busybox\nRUN x", Options{})
	if p.Target.Platform != "linux/amd64" {
		t.Errorf("default platform %q", p.Target.Platform)
	}
	p = mustPlan(t, "FROM --platform=$TARGETPLATFORM scratch", Options{Platform: "linux/arm/v7"})
	if p.Target.Platform != "linux/arm/v7" || p.Target.Config.Architecture != "arm" || p.Target.Config.Variant != "v7" {
		t.Errorf("platform %q, config %s/%s", p.Target.Platform, p.Target.Config.Architecture, p.Target.Config.Variant)
	}
}

func TestEnvSameInstruction(t *testing.T) {
	p := mustPlan(t, "FROM busybox\nENV a=1\nENV a=2 b=$a c=${a}x\nENV d $a", Options{})
	env := p.Target.Config.Config.Env
	for k, want := range map[string]string{"a": "2", "b": "1", "c": "1x", "d": "2"} {
		if got, _ := envValue(env, k); got != want {
			t.Errorf("%s=%q, want %q (env %q)", k, got, want, env)
		}
	}
}

func TestExpansionOperators(t *testing.T) {
	tests := []struct {
		word, want string
	}{
		{"${SET:-d}", "v"},
		{"${UNSET:-d}", "d"},
		{"${EMPTY:-d}", "d"},
		{"${EMPTY-d}", ""},
		{"${UNSET-d}", "d"},
		{"${SET:+a}", "a"},
		{"${EMPTY:+a}", ""},
		{"${EMPTY+a}", "a"},
		{"${UNSET+a}", ""},
		{"${PATHY#*/}", "b/c"},
		{"${PATHY##*/}", "c"},
		{"${PATHY%/*}", "a/b"},
		{"${PATHY%%/*}", "a"},
		{`\$SET`, "$SET"},
		{"'$SET'", "$SET"},
		{`"$SET"`, "v"},
		{"pre${SET}post", "prevpost"},
	}
	for _, tc := range tests {
		t.Run(tc.word, func(t *testing.T) {
			src := "FROM busybox\nENV SET=v EMPTY= PATHY=a/b/c\nLABEL x=" + tc.word
			p := mustPlan(t, src, Options{})
			if got := p.Target.Config.Config.Labels["x"]; got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	e := planError(t, "FROM busybox\nENV A=${UNSET:?needs_value}", Options{})
	if e.Loc.Line != 2 || !strings.Contains(e.Msg, "needs_value") {
		t.Errorf("error %v", e)
	}
}

func TestRunTextHasBuildArgs(t *testing.T) {
	p := mustPlan(t, "FROM busybox\nARG A=1\nARG B\nENV A=2\nRUN echo $A", Options{})
	got := lastRun(t, p).Text
	want := "RUN |2 A=2 B= /bin/sh -c echo $A # buildkit"
	if got != want {
		t.Errorf("text %q, want %q", got, want)
	}
}

func TestPlanIsRepeatable(t *testing.T) {
	df, err := Parse("Dockerfile", []byte("FROM busybox\nARG V=a\nENV E=$V\nCOPY $V /x"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, v := range []string{"one", "two", "one"} {
		p, err := df.Plan(ctx, Options{BuildArgs: map[string]string{"V": v}, Resolver: &fakeResolver{}})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := envValue(p.Target.Config.Config.Env, "E"); got != v {
			t.Errorf("E=%q, want %q", got, v)
		}
		if src := p.Target.Steps[2].Copy.Sources[0]; src != v {
			t.Errorf("COPY source %q, want %q", src, v)
		}
	}
}
