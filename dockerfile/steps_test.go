package dockerfile

import (
	"slices"
	"testing"
	"time"
)

func TestHeredocRun(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		args  []string
		files []RunFile
	}{
		{
			name: "body run by the shell",
			src:  "RUN <<EOF\necho hi\nEOF",
			args: []string{"/bin/sh", "-c", "echo hi\n"},
		},
		{
			name: "chomped body",
			src:  "RUN <<-EOF\n\techo hi\n\tEOF",
			args: []string{"/bin/sh", "-c", "echo hi\n"},
		},
		{
			name:  "shebang becomes a script",
			src:   "RUN <<EOT\n#!/usr/bin/awk -f\nBEGIN{}\nEOT",
			args:  []string{"/bin/sh", "-c", "/dev/pipes/EOT"},
			files: []RunFile{{Path: "/dev/pipes/EOT", Data: []byte("#!/usr/bin/awk -f\nBEGIN{}\n"), Mode: 0o755}},
		},
		{
			name: "heredoc as stdin is left to the shell",
			src:  "RUN cat <<EOF > /x\n$HOME\nEOF",
			args: []string{"/bin/sh", "-c", "cat <<EOF > /x\n$HOME\nEOF"},
		},
		{
			name: "two heredocs",
			src:  "RUN cat <<A <<-B\na\nA\n\tb\n\tB",
			args: []string{"/bin/sh", "-c", "cat <<A <<-B\na\nA\n\tb\nB"},
		},
		{
			name: "custom shell",
			src:  "SHELL [\"/bin/bash\", \"-ec\"]\nRUN <<EOF\nx\nEOF",
			args: []string{"/bin/bash", "-ec", "x\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPlan(t, "FROM busybox\n"+tc.src, Options{})
			run := lastRun(t, p).Run
			if !slices.Equal(run.Args, tc.args) {
				t.Errorf("args %q, want %q", run.Args, tc.args)
			}
			if !slices.EqualFunc(run.Files, tc.files, func(a, b RunFile) bool {
				return a.Path == b.Path && string(a.Data) == string(b.Data) && a.Mode == b.Mode
			}) {
				t.Errorf("files %+v, want %+v", run.Files, tc.files)
			}
		})
	}
}

func TestHeredocCopy(t *testing.T) {
	src := "FROM busybox\nARG name=world\n" +
		"COPY <<EOF /a\nHi ${name} \\$x\nEOF\n" +
		"COPY <<'EOF' /b\nHi ${name}\nEOF\n" +
		"COPY <<-EOF <<EOF2 /dir/\n\tone\nEOF\ntwo\nEOF2\n"
	p := mustPlan(t, src, Options{})
	want := [][]InlineFile{
		{{Name: "EOF", Data: []byte("Hi world $x\n"), Mode: 0o644}},
		{{Name: "EOF", Data: []byte("Hi ${name}\n"), Mode: 0o644}},
		{{Name: "EOF", Data: []byte("one\n"), Mode: 0o644}, {Name: "EOF2", Data: []byte("two\n"), Mode: 0o644}},
	}
	var got [][]InlineFile
	for _, st := range p.Target.Steps {
		if st.Kind == Copy {
			got = append(got, st.Copy.Inline)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d COPY steps, want %d", len(got), len(want))
	}
	for i := range want {
		if !slices.EqualFunc(got[i], want[i], func(a, b InlineFile) bool {
			return a.Name == b.Name && string(a.Data) == string(b.Data) && a.Mode == b.Mode
		}) {
			t.Errorf("COPY %d inline %+v, want %+v", i, got[i], want[i])
		}
	}
	if txt := p.Target.Steps[3].Text; txt != "COPY <<EOF <<EOF2 /dir/ # buildkit" {
		t.Errorf("text %q", txt)
	}
}

func TestStepTexts(t *testing.T) {
	src := `FROM busybox
ENV A=1 B="two words"
LABEL k=v "x y"=z
ARG X=1 Y
WORKDIR app
WORKDIR /
USER 1000:1000
CMD ["a", "b"]
ENTRYPOINT run it
COPY --chown=1:2 --chmod=0755 a* b /dst/
ADD --link https://example.com/f.tgz /f
EXPOSE 80 53/udp
VOLUME /v
STOPSIGNAL SIGTERM
SHELL ["/bin/bash", "-c"]
HEALTHCHECK --retries=2 CMD ["true"]
MAINTAINER me
ONBUILD RUN x
`
	want := []struct {
		kind StepKind
		text string
	}{
		{Meta, "ENV A=1 B=two words"},
		{Meta, "LABEL k=v x y=z"},
		{Meta, "ARG X=1 Y"},
		{Workdir, "WORKDIR /app"},
		{Meta, "WORKDIR /"},
		{Meta, "USER 1000:1000"},
		{Meta, `CMD ["a" "b"]`},
		{Meta, `ENTRYPOINT ["/bin/sh" "-c" "run it"]`},
		{Copy, "COPY --chown=1:2 --chmod=0755 a* b /dst/ # buildkit"},
		{Copy, "ADD https://example.com/f.tgz /f # buildkit"},
		{Meta, "EXPOSE [53/udp 80/tcp]"}, // buildkit sorts the words
		{Meta, "VOLUME [/v]"},
		{Meta, "STOPSIGNAL SIGTERM"},
		{Meta, "SHELL [/bin/bash -c]"},
		{Meta, "HEALTHCHECK {Test:[CMD true] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:2}"},
		{Meta, "MAINTAINER me"},
		{Meta, "ONBUILD RUN x"},
	}
	p := mustPlan(t, src, Options{})
	steps := p.Target.Steps
	if len(steps) != len(want) {
		t.Fatalf("%d steps, want %d", len(steps), len(want))
	}
	for i, w := range want {
		if steps[i].Kind != w.kind || steps[i].Text != w.text {
			t.Errorf("step %d: %v %q, want %v %q", i, steps[i].Kind, steps[i].Text, w.kind, w.text)
		}
		if steps[i].Loc.Line != i+2 {
			t.Errorf("step %d at line %d", i, steps[i].Loc.Line)
		}
	}
	if steps[3].Workdir != "/app" {
		t.Errorf("WORKDIR step creates %q", steps[3].Workdir)
	}
	if c := steps[8].Copy; c.Dest != "/dst/" || !slices.Equal(c.Sources, []string{"a*", "b"}) || c.Chown != "1:2" || c.Chmod != "0755" {
		t.Errorf("COPY step %+v", c)
	}
	if c := steps[9].Copy; !c.Add || !c.Link {
		t.Errorf("ADD step %+v", c)
	}
	// Each step carries the config after it.
	if steps[5].Config.Config.User != "1000:1000" || steps[4].Config.Config.User != "" {
		t.Error("step configs do not track USER")
	}
	if steps[6].User != "1000:1000" {
		t.Errorf("step user %q", steps[6].User)
	}
	cfg := p.Target.Config
	if cfg.Author != "me" || cfg.Config.StopSignal != "SIGTERM" || !slices.Equal(cfg.Config.Cmd, []string{"a", "b"}) {
		t.Errorf("config %+v", cfg.Config)
	}
	if h := cfg.Config.Healthcheck; h == nil || h.Retries != 2 || !slices.Equal(h.Test, []string{"CMD", "true"}) {
		t.Errorf("healthcheck %+v", h)
	}
}

func TestConfigInstructions(t *testing.T) {
	p := mustPlan(t, `FROM busybox
CMD ["c"]
ENTRYPOINT ["e"]
ENV P=8080
EXPOSE $P 1000-1002/udp 127.0.0.1:9000:90
VOLUME ["/a", "/b"] 
VOLUME /c /d
HEALTHCHECK --interval=1m --timeout=2s --start-period=3s CMD curl -f x
WORKDIR rel
WORKDIR ../other/./x
`, Options{})
	c := p.Target.Config.Config
	if !slices.Equal(c.Cmd, []string{"c"}) || !slices.Equal(c.Entrypoint, []string{"e"}) {
		t.Errorf("CMD set in the stage must survive ENTRYPOINT: %q %q", c.Cmd, c.Entrypoint)
	}
	if msg := setEq(c.ExposedPorts, []string{"8080/tcp", "1000/udp", "1001/udp", "1002/udp", "90/tcp"}); msg != "" {
		t.Error("ports:", msg)
	}
	if msg := setEq(c.Volumes, []string{"/a", "/b", "/c", "/d"}); msg != "" {
		t.Error("volumes:", msg)
	}
	h := c.Healthcheck
	if h.Interval != time.Minute || h.Timeout != 2*time.Second || h.StartPeriod != 3*time.Second ||
		!slices.Equal(h.Test, []string{"CMD-SHELL", "curl -f x"}) {
		t.Errorf("healthcheck %+v", h)
	}
	if c.WorkingDir != "/other/x" {
		t.Errorf("workdir %q", c.WorkingDir)
	}
	// An inherited CMD is reset by ENTRYPOINT.
	p = mustPlan(t, "FROM busybox\nENTRYPOINT [\"e\"]", Options{})
	if p.Target.Config.Config.Cmd != nil {
		t.Errorf("inherited CMD kept: %q", p.Target.Config.Config.Cmd)
	}
}

func TestRunFlags(t *testing.T) {
	src := `FROM busybox AS src
FROM busybox
ARG CACHE=/root/.cache
WORKDIR /w
RUN --network=none --security=insecure \
    --mount=type=cache,target=$CACHE,sharing=locked,uid=1,mode=0700 \
    --mount=type=bind,from=src,source=/etc,target=etc \
    --mount=type=bind,from=debian:bookworm,target=/deb,rw \
    --mount=type=tmpfs,target=/t,size=1m \
    --mount=type=secret,id=tok,env=TOKEN \
    --mount=type=secret,id=key,required \
    --mount=type=ssh \
    make
`
	p := mustPlan(t, src, Options{BuildArgs: map[string]string{"http_proxy": "http://p"}})
	run := lastRun(t, p).Run
	if run.Network != "none" || run.Security != "insecure" || run.Cwd != "/w" {
		t.Errorf("run %+v", run)
	}
	if !slices.Equal(run.ProxyEnv, []string{"HTTP_PROXY=http://p", "http_proxy=http://p"}) {
		t.Errorf("proxy env %q", run.ProxyEnv)
	}
	if len(run.Mounts) != 7 {
		t.Fatalf("%d mounts", len(run.Mounts))
	}
	m := run.Mounts
	if m[0].Type != "cache" || m[0].Target != "/root/.cache" || m[0].Sharing != "locked" || m[0].ID != "/root/.cache" ||
		m[0].UID == nil || *m[0].UID != 1 || m[0].Mode == nil || *m[0].Mode != 0o700 || m[0].ReadOnly {
		t.Errorf("cache mount %+v", m[0])
	}
	if m[1].FromStage != p.Stages[0] || m[1].Target != "/w/etc" || m[1].Source != "/etc" || !m[1].ReadOnly {
		t.Errorf("bind mount %+v", m[1])
	}
	if m[2].FromImage != "debian:bookworm" || m[2].ReadOnly {
		t.Errorf("image bind mount %+v", m[2])
	}
	if m[3].Type != "tmpfs" || m[3].Size != 1<<20 {
		t.Errorf("tmpfs mount %+v", m[3])
	}
	if m[4].ID != "tok" || m[4].Env != "TOKEN" || m[4].Target != "" {
		t.Errorf("env secret %+v", m[4])
	}
	if m[5].ID != "key" || !m[5].Required || m[5].Target != "/run/secrets/key" {
		t.Errorf("file secret %+v", m[5])
	}
	if m[6].Type != "ssh" || m[6].ID != "default" {
		t.Errorf("ssh mount %+v", m[6])
	}
	if !slices.Contains(p.Target.Deps, p.Stages[0]) {
		t.Error("mount source stage is not a dependency")
	}
	plain := mustPlan(t, "FROM busybox\nRUN true", Options{})
	if r := lastRun(t, plain).Run; r.Network != "" || r.Security != "" || r.ProxyEnv != nil || r.Cwd != "/" {
		t.Errorf("defaults %+v", r)
	}
}

func TestRunExecFormNotExpanded(t *testing.T) {
	p := mustPlan(t, "FROM busybox\nENV F=bar\nRUN [\"/bin/touch\", \"/tmp/$F\"]\nRUN echo ${F%r}", Options{})
	var args [][]string
	for _, st := range p.Target.Steps {
		if st.Kind == Run {
			args = append(args, st.Run.Args)
		}
	}
	if !slices.Equal(args[0], []string{"/bin/touch", "/tmp/$F"}) || !slices.Equal(args[1], []string{"/bin/sh", "-c", "echo ${F%r}"}) {
		t.Errorf("args %q", args)
	}
}
