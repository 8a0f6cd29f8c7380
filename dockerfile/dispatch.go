package dockerfile

import (
	"fmt"
	"path"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// dispatchStage starts a stage from its base and applies its instructions.
func (p *planner) dispatchStage(s *stageState) error {
	out := &Stage{
		Index:    s.idx,
		Name:     s.name,
		Loc:      p.loc(s.inst.Location),
		Platform: s.platform,
	}
	s.out = out
	switch {
	case s.base != nil:
		out.BaseStage = s.base.out
		out.BaseConfig = s.base.out.Config.DeepCopy()
		s.env = s.base.env.clone()
		s.buildArgs = slices.Clone(s.base.buildArgs)
	case s.baseName == scratchName:
		out.Scratch = true
		out.BaseConfig = p.scratchConfig(s.platform)
	default:
		out.BaseImage = s.baseName
		out.BaseConfig = s.imageCfg.DeepCopy()
	}
	s.cfg = out.BaseConfig.DeepCopy()
	// Triggers are consumed by this stage; only its own ONBUILDs remain.
	s.cfg.Config.OnBuild = nil
	if s.base == nil {
		if _, ok := newEnvList(s.cfg.Config.Env).Get("PATH"); !ok {
			s.cfg.Config.Env = append(s.cfg.Config.Env, "PATH="+defaultPath)
		}
		s.env = newEnvList(s.cfg.Config.Env)
		if wd := s.cfg.Config.WorkingDir; wd != "" {
			s.cfg.Config.WorkingDir = normalizeWorkdir("/", wd)
		}
	}
	for _, c := range s.cmds {
		if err := p.dispatch(s, c); err != nil {
			return p.errAt(c.loc, err)
		}
	}
	out.Config = s.cfg.DeepCopy()
	seen := map[*stageState]bool{}
	for _, d := range s.deps {
		if !seen[d.stage] {
			seen[d.stage] = true
			out.Deps = append(out.Deps, d.stage.out)
		}
	}
	s.dispatched = true
	return nil
}

func (p *planner) scratchConfig(plat string) *v1.ConfigFile {
	pl, _ := parsePlatform(plat)
	cfg := &v1.ConfigFile{
		Architecture: pl.Arch,
		OS:           pl.OS,
		Variant:      pl.Variant,
		RootFS:       v1.RootFS{Type: "layers"},
	}
	cfg.Config.Env = []string{"PATH=" + defaultPath}
	cfg.Config.WorkingDir = "/"
	return cfg
}

// normalizeWorkdir resolves wd against cur the way BuildKit does on Linux:
// a relative path is joined and cleaned, an absolute one kept as written.
func normalizeWorkdir(cur, wd string) string {
	if cur == "" {
		cur = "/"
	}
	if !path.IsAbs(cur) {
		cur = path.Join("/", cur)
	}
	if wd == "" {
		return cur
	}
	if path.IsAbs(wd) {
		return wd
	}
	return path.Join(cur, wd)
}

// addStep records a step with the config and environment after it.
func (p *planner) addStep(s *stageState, c command, kind StepKind, text string) *Step {
	st := &Step{
		Kind:   kind,
		Loc:    c.loc,
		Text:   text,
		Config: s.cfg.DeepCopy(),
		Env:    s.env.slice(),
		User:   s.cfg.Config.User,
	}
	s.out.Steps = append(s.out.Steps, st)
	return st
}

// dispatch applies one instruction.
func (p *planner) dispatch(s *stageState, c command) error {
	// ARG expands its default itself: a value given by --build-arg wins
	// and is never expanded.
	if ex, ok := c.Command.(instructions.SupportsSingleWordExpansion); ok {
		if _, isArg := c.Command.(*instructions.ArgCommand); !isArg {
			if err := ex.Expand(p.expander(s.env)); err != nil {
				return err
			}
		}
	}
	if ex, ok := c.Command.(instructions.SupportsSingleWordExpansionRaw); ok {
		if err := ex.ExpandRaw(rawExpander(s.env)); err != nil {
			return err
		}
	}
	cfg := &s.cfg.Config
	switch cmd := c.Command.(type) {
	case *instructions.EnvCommand:
		var text strings.Builder
		text.WriteString("ENV")
		for _, kv := range cmd.Env {
			text.WriteString(" " + kv.Key + "=" + kv.Value)
			s.env.set(kv.Key, kv.Value)
			cfg.Env = addEnv(cfg.Env, kv.Key, kv.Value)
		}
		p.addStep(s, c, Meta, text.String())
	case *instructions.MaintainerCommand:
		s.cfg.Author = cmd.Maintainer
		p.addStep(s, c, Meta, "MAINTAINER "+cmd.Maintainer)
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		var text strings.Builder
		text.WriteString("LABEL")
		for _, kv := range cmd.Labels {
			cfg.Labels[kv.Key] = kv.Value
			text.WriteString(" " + kv.Key + "=" + kv.Value)
		}
		p.addStep(s, c, Meta, text.String())
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, cmd.Expression)
		p.addStep(s, c, Meta, "ONBUILD "+cmd.Expression)
	case *instructions.CmdCommand:
		args := slices.Clone(cmd.CmdLine)
		if cmd.PrependShell {
			args = withShell(cfg, args)
		}
		cfg.Cmd = args
		cfg.ArgsEscaped = true // BuildKit sets it for Docker compatibility
		s.cmdSet = true
		p.addStep(s, c, Meta, fmt.Sprintf("CMD %q", args))
	case *instructions.EntrypointCommand:
		args := slices.Clone(cmd.CmdLine)
		if cmd.PrependShell {
			args = withShell(cfg, args)
		}
		cfg.Entrypoint = args
		if !s.cmdSet {
			cfg.Cmd = nil // an inherited CMD was meant for the old entrypoint
		}
		p.addStep(s, c, Meta, fmt.Sprintf("ENTRYPOINT %q", args))
	case *instructions.HealthCheckCommand:
		h := cmd.Health
		cfg.Healthcheck = &v1.HealthConfig{
			Test:        slices.Clone(h.Test),
			Interval:    h.Interval,
			Timeout:     h.Timeout,
			StartPeriod: h.StartPeriod,
			Retries:     h.Retries,
		}
		p.addStep(s, c, Meta, fmt.Sprintf("HEALTHCHECK {Test:%v Interval:%v Timeout:%v StartPeriod:%v StartInterval:%v Retries:%d}",
			h.Test, h.Interval, h.Timeout, h.StartPeriod, h.StartInterval, h.Retries))
	case *instructions.ExposeCommand:
		var words []string
		for _, w := range cmd.Ports {
			ws, err := p.lex.ProcessWords(w, s.env)
			if err != nil {
				return err
			}
			words = append(words, ws...)
		}
		ports, err := parsePorts(words)
		if err != nil {
			return err
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, pt := range ports {
			cfg.ExposedPorts[pt] = struct{}{}
		}
		p.addStep(s, c, Meta, fmt.Sprintf("EXPOSE %v", ports))
	case *instructions.UserCommand:
		cfg.User = cmd.User
		p.addStep(s, c, Meta, "USER "+cmd.User)
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range cmd.Volumes {
			if v == "" {
				return fmt.Errorf("VOLUME specified can not be an empty string")
			}
			cfg.Volumes[v] = struct{}{}
		}
		p.addStep(s, c, Meta, fmt.Sprintf("VOLUME %v", cmd.Volumes))
	case *instructions.StopSignalCommand:
		if err := checkSignal(cmd.Signal); err != nil {
			return err
		}
		cfg.StopSignal = cmd.Signal
		p.addStep(s, c, Meta, "STOPSIGNAL "+cmd.Signal)
	case *instructions.ShellCommand:
		cfg.Shell = slices.Clone(cmd.Shell)
		p.addStep(s, c, Meta, fmt.Sprintf("SHELL %v", cmd.Shell))
	case *instructions.ArgCommand:
		return p.dispatchArg(s, c, cmd)
	case *instructions.WorkdirCommand:
		wd := normalizeWorkdir(cfg.WorkingDir, cmd.Path)
		cfg.WorkingDir = wd
		kind := Meta
		if wd != "/" {
			kind = Workdir
		}
		st := p.addStep(s, c, kind, "WORKDIR "+wd)
		if kind == Workdir {
			st.Workdir = wd
		}
	case *instructions.RunCommand:
		return p.dispatchRun(s, c, cmd)
	case *instructions.CopyCommand:
		return p.dispatchCopy(s, c, copyArgs{
			add: false, sd: cmd.SourcesAndDest, chown: cmd.Chown, chmod: cmd.Chmod,
			link: cmd.Link, excludes: cmd.ExcludePatterns, parents: cmd.Parents, from: cmd.From,
		})
	case *instructions.AddCommand:
		return p.dispatchCopy(s, c, copyArgs{
			add: true, sd: cmd.SourcesAndDest, chown: cmd.Chown, chmod: cmd.Chmod,
			link: cmd.Link, excludes: cmd.ExcludePatterns, keepGitDir: cmd.KeepGitDir,
			checksum: cmd.Checksum, unpack: cmd.Unpack,
		})
	default:
		return fmt.Errorf("unsupported instruction %s", strings.ToUpper(c.Name()))
	}
	return nil
}

// withShell wraps a shell-form command line with the SHELL in effect.
func withShell(cfg *v1.Config, args []string) []string {
	sh := []string{"/bin/sh", "-c"}
	if len(cfg.Shell) > 0 {
		sh = slices.Clone(cfg.Shell)
	}
	return append(sh, strings.Join(args, " "))
}

// dispatchArg declares build args in the stage. A --build-arg value wins,
// then the default (expanded), then a global ARG of the same name.
func (p *planner) dispatchArg(s *stageState, c command, cmd *instructions.ArgCommand) error {
	parts := make([]string, 0, len(cmd.Args))
	for _, kv := range cmd.Args {
		var val *string
		if v, ok := p.opts.BuildArgs[kv.Key]; ok {
			val = &v
		} else if kv.Value != nil {
			v, _, err := p.lex.ProcessWord(*kv.Value, s.env)
			if err != nil {
				return err
			}
			val = &v
		} else if v, ok := p.global.Get(kv.Key); ok {
			val = &v
		}
		part := kv.Key
		if val != nil {
			s.env.set(kv.Key, *val)
			part += "=" + *val
		}
		s.buildArgs = append(s.buildArgs, argValue{key: kv.Key, value: val})
		parts = append(parts, part)
	}
	p.addStep(s, c, Meta, "ARG "+strings.Join(parts, " "))
	return nil
}
