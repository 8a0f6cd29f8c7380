package dockerfile

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func stageNames(p *Plan) []string {
	var out []string
	for _, s := range p.Stages {
		n := s.Name
		if n == "" {
			n = "#" + string(rune('0'+s.Index))
		}
		out = append(out, n)
	}
	return out
}

func TestStageSelection(t *testing.T) {
	src := `FROM busybox AS base
RUN a
FROM nosuchimage AS broken
RUN exit 1
FROM base AS mid
COPY --from=0 /x /y
FROM scratch AS other
FROM busybox AS final
COPY --from=mid /y /z
RUN --mount=type=bind,from=other,target=/o true
`
	tests := []struct {
		target string
		want   []string
		calls  []string
	}{
		{"", []string{"base", "mid", "other", "final"}, []string{"busybox", "busybox"}},
		{"MID", []string{"base", "mid"}, []string{"busybox"}},
		{"base", []string{"base"}, []string{"busybox"}},
		{"other", []string{"other"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			r := &fakeResolver{}
			p := mustPlan(t, src, Options{Target: tc.target, Resolver: r})
			if got := stageNames(p); !slices.Equal(got, tc.want) {
				t.Errorf("stages %v, want %v", got, tc.want)
			}
			if p.Target != p.Stages[len(p.Stages)-1] {
				t.Errorf("target is not the last stage")
			}
			slices.Sort(r.calls)
			if !slices.Equal(r.calls, tc.calls) {
				t.Errorf("resolver calls %q, want %q", r.calls, tc.calls)
			}
		})
	}

	e := planError(t, src, Options{Target: "broken"})
	if e.Loc.Line != 3 || !strings.Contains(e.Msg, "nosuchimage") {
		t.Errorf("broken stage error %v", e)
	}
	e = planError(t, src, Options{Target: "nope"})
	if !strings.Contains(e.Msg, `target stage "nope" could not be found`) {
		t.Errorf("unknown target error %v", e)
	}
}

func TestStageLinks(t *testing.T) {
	src := `FROM busybox AS base
ENV A=1
WORKDIR /w
FROM base AS child
COPY --from=0 /a /b
COPY --from=busybox /etc/passwd /p
FROM scratch
COPY --from=child /b /c
`
	p := mustPlan(t, src, Options{})
	base, child, last := p.Stages[0], p.Stages[1], p.Stages[2]
	if child.BaseStage != base || child.BaseImage != "" {
		t.Errorf("child base %v %q", child.BaseStage, child.BaseImage)
	}
	if !slices.Equal(child.Deps, []*Stage{base}) || !slices.Equal(last.Deps, []*Stage{child}) {
		t.Errorf("deps %v %v", child.Deps, last.Deps)
	}
	if child.BaseConfig.Config.WorkingDir != "/w" || !slices.Contains(child.BaseConfig.Config.Env, "A=1") {
		t.Errorf("child base config %+v", child.BaseConfig.Config)
	}
	if child.BaseConfig == base.Config {
		t.Error("BaseConfig shares the base stage's config")
	}
	if c := child.Steps[0].Copy; c.FromStage != base || c.Workdir != "/w" {
		t.Errorf("COPY --from=0: %+v", c)
	}
	if c := child.Steps[1].Copy; c.FromStage != nil || c.FromImage != "busybox" {
		t.Errorf("COPY --from=busybox: %+v", c)
	}
	if !last.Scratch || last.BaseConfig.Config.WorkingDir != "/" || !slices.Equal(last.Config.Config.Env, []string{"PATH=" + defaultPath}) {
		t.Errorf("scratch stage %+v", last.Config.Config)
	}
}

func TestStageNameCase(t *testing.T) {
	p := mustPlan(t, "FROM busybox AS Stage0\nFROM stage0 AS s1\nCOPY --from=STAGE0 a b", Options{Target: "S1"})
	if p.Target.Name != "s1" || p.Target.BaseStage == nil || p.Target.Steps[0].Copy.FromStage == nil {
		t.Errorf("case-insensitive names not linked: %+v", p.Target)
	}
	// FROM with an upper-case stage name is an (invalid) image reference.
	e := planError(t, "FROM busybox AS stage0\nFROM STAGE0", Options{})
	if e.Loc.Line != 2 {
		t.Errorf("error %v", e)
	}
}

func TestResolverConfigNotMutated(t *testing.T) {
	cfg := busyboxConfig()
	cfg.Config.OnBuild = []string{"ENV X=1"}
	r := staticResolver{cfg: cfg}
	p := mustPlan(t, "FROM img\nENV A=1\nLABEL l=v", Options{Resolver: r})
	if len(cfg.Config.Env) != 1 || cfg.Config.Labels != nil || len(cfg.Config.OnBuild) != 1 {
		t.Errorf("resolver's config mutated: %+v", cfg.Config)
	}
	if !slices.Equal(p.Target.BaseConfig.Config.OnBuild, []string{"ENV X=1"}) {
		t.Errorf("BaseConfig.OnBuild %q", p.Target.BaseConfig.Config.OnBuild)
	}
	if p.Target.Config.Config.OnBuild != nil {
		t.Errorf("inherited triggers kept: %q", p.Target.Config.Config.OnBuild)
	}
	if got, _ := envValue(p.Target.Config.Config.Env, "X"); got != "1" {
		t.Errorf("trigger did not run: %q", p.Target.Config.Config.Env)
	}
	if st := p.Target.Steps[0]; st.Loc.Line != 1 || st.Text != "ENV X=1" {
		t.Errorf("trigger step %+v", st)
	}
}

type staticResolver struct{ cfg *v1.ConfigFile }

func (r staticResolver) ResolveImageConfig(ctx context.Context, ref string) (*v1.ConfigFile, error) {
	return r.cfg, nil
}

type errResolver struct{ err error }

func (r errResolver) ResolveImageConfig(ctx context.Context, ref string) (*v1.ConfigFile, error) {
	return nil, r.err
}

func TestResolverErrorWraps(t *testing.T) {
	_, err := planBytes([]byte("FROM busybox"), Options{Resolver: errResolver{context.Canceled}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
}

func TestOnbuild(t *testing.T) {
	src := `FROM busybox AS parent
ONBUILD RUN first
ONBUILD COPY --from=data /d /d
FROM scratch AS data
FROM parent AS child
RUN mine
ONBUILD RUN later
FROM child AS grandchild
RUN last
`
	p := mustPlan(t, src, Options{})
	if got := stageNames(p); !slices.Equal(got, []string{"parent", "data", "child", "grandchild"}) {
		t.Fatalf("stages %v (trigger deps must be planned)", got)
	}
	parent, child, grand := p.Stages[0], p.Stages[2], p.Stages[3]
	if len(parent.Steps) != 2 || parent.Steps[0].Kind != Meta {
		t.Errorf("parent ran its own triggers: %+v", parent.Steps)
	}
	if !slices.Equal(parent.Config.Config.OnBuild, []string{"RUN first", "COPY --from=data /d /d"}) {
		t.Errorf("parent OnBuild %q", parent.Config.Config.OnBuild)
	}
	var texts []string
	for _, st := range child.Steps {
		texts = append(texts, st.Text)
	}
	want := []string{"RUN /bin/sh -c first # buildkit", "COPY /d /d # buildkit", "RUN /bin/sh -c mine # buildkit", "ONBUILD RUN later"}
	if !slices.Equal(texts, want) {
		t.Errorf("child steps %q, want %q", texts, want)
	}
	if child.Steps[0].Loc.Line != 5 || child.Steps[1].Loc.Line != 5 {
		t.Errorf("trigger locations %v %v, want the FROM line", child.Steps[0].Loc, child.Steps[1].Loc)
	}
	if !slices.Contains(child.Deps, p.Stages[1]) {
		t.Errorf("child deps %v lack the trigger's --from stage", child.Deps)
	}
	if !slices.Equal(child.Config.Config.OnBuild, []string{"RUN later"}) {
		t.Errorf("child OnBuild %q", child.Config.Config.OnBuild)
	}
	if len(grand.Steps) != 2 || grand.Steps[0].Text != "RUN /bin/sh -c later # buildkit" {
		t.Errorf("grandchild must run only child's triggers: %+v", grand.Steps)
	}
}

func TestOnbuildErrors(t *testing.T) {
	tests := []struct {
		src, msg string
		line     int
	}{
		{"FROM busybox\nONBUILD FROM scratch", "isn't allowed as an ONBUILD trigger", 2},
		{"FROM busybox\nONBUILD MAINTAINER me", "isn't allowed as an ONBUILD trigger", 2},
		{"FROM busybox\nONBUILD ONBUILD RUN x", "Chaining ONBUILD", 2},
		{"FROM busybox AS a\nONBUILD BOGUS x\nFROM a", "unknown instruction", 3},
	}
	for _, tc := range tests {
		t.Run(tc.msg, func(t *testing.T) {
			e := planError(t, tc.src, Options{})
			if e.Loc.Line != tc.line || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("error %v, want line %d %q", e, tc.line, tc.msg)
			}
		})
	}
}
