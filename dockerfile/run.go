package dockerfile

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// pipesDir is where a shebang heredoc script is provided to RUN, as BuildKit.
const pipesDir = "/dev/pipes/"

// dispatchRun plans a RUN. Its command text is never expanded by the
// builder: the shell does that at run time.
func (p *planner) dispatchRun(s *stageState, c command, cmd *instructions.RunCommand) error {
	if slices.Contains(cmd.FlagsUsed, "device") {
		return errors.New("RUN --device is not supported")
	}
	cfg := &s.cfg.Config
	args := slices.Clone(cmd.CmdLine)
	var files []RunFile
	if len(cmd.Files) > 0 {
		if len(args) != 1 || !cmd.PrependShell {
			return fmt.Errorf("parsing produced an invalid run command: %v", args)
		}
		if hd := parser.MustParseHeredoc(args[0]); hd != nil {
			// The whole command is one heredoc: run its body.
			f := cmd.Files[0]
			data := f.Data
			if f.Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				script := path.Join(pipesDir, f.Name)
				files = append(files, RunFile{Path: script, Data: []byte(data), Mode: 0o755})
				args = []string{script}
			} else {
				args = []string{data}
			}
		} else {
			// Heredocs feed a command: hand the shell the script it
			// would have read, and let it process the heredocs.
			var b strings.Builder
			b.WriteString(args[0])
			for _, f := range cmd.Files {
				b.WriteString("\n" + f.Data + f.Name)
			}
			args = []string{b.String()}
		}
	}
	if cmd.PrependShell {
		args = withShell(cfg, args)
	}
	mounts, err := p.runMounts(s, c, cmd)
	if err != nil {
		return err
	}
	rs := &RunStep{
		Args:     args,
		Cwd:      cfg.WorkingDir,
		Mounts:   mounts,
		Files:    files,
		ProxyEnv: proxyEnv(p.opts.BuildArgs),
	}
	if rs.Cwd == "" {
		rs.Cwd = "/"
	}
	if slices.Contains(cmd.FlagsUsed, "network") {
		rs.Network = instructions.GetNetwork(cmd)
	}
	if slices.Contains(cmd.FlagsUsed, "security") {
		rs.Security = instructions.GetSecurity(cmd)
	}
	st := p.addStep(s, c, Run, "RUN "+runText(args, s.buildArgs, s.env)+" # buildkit")
	st.Run = rs
	return nil
}

// runText is BuildKit's history text for a RUN: the build args in scope
// ("|N K=V ...") followed by argv joined with spaces.
func runText(args []string, buildArgs []argValue, env *envList) string {
	var kv []string
	idx := map[string]int{}
	for _, a := range buildArgs {
		v, ok := env.Get(a.key)
		if !ok && a.value != nil {
			v = *a.value
		}
		if i, ok := idx[a.key]; ok {
			kv[i] = a.key + "=" + v
			continue
		}
		idx[a.key] = len(kv)
		kv = append(kv, a.key+"="+v)
	}
	if len(kv) > 0 {
		kv = append([]string{fmt.Sprintf("|%d", len(kv))}, kv...)
	}
	return strings.Join(append(kv, args...), " ")
}

// runMounts converts the expanded --mount flags.
func (p *planner) runMounts(s *stageState, c command, cmd *instructions.RunCommand) ([]RunMount, error) {
	ms := instructions.GetMounts(cmd)
	var out []RunMount
	for i, m := range ms {
		rm := RunMount{
			Type:     string(m.Type),
			Target:   m.Target,
			Source:   m.Source,
			ReadOnly: m.ReadOnly,
			ID:       m.CacheID,
			Sharing:  string(m.CacheSharing),
			Required: m.Required,
			Size:     m.SizeLimit,
		}
		if m.Env != nil {
			rm.Env = *m.Env
		}
		if m.UID != nil {
			v := int(*m.UID)
			rm.UID = &v
		}
		if m.GID != nil {
			v := int(*m.GID)
			rm.GID = &v
		}
		if m.Mode != nil {
			v := uint32(*m.Mode)
			rm.Mode = &v
		}
		if m.From != "" && i < len(c.sources) {
			src := c.sources[i]
			if src.stage != nil {
				if !src.stage.dispatched {
					return nil, fmt.Errorf("cannot mount from stage %q to %q, stage needs to be defined before current command", m.From, m.Target)
				}
				rm.FromStage = src.stage.out
			} else {
				rm.FromImage = src.image
			}
		}
		switch m.Type {
		case instructions.MountTypeSecret:
			id := m.CacheID
			if m.Source != "" {
				id = m.Source
			}
			if id == "" {
				if m.Target == "" {
					return nil, errors.New("one of source, target required")
				}
				id = path.Base(m.Target)
			}
			rm.ID = id
			if m.Env == nil && rm.Target == "" {
				rm.Target = "/run/secrets/" + path.Base(id)
			}
			out = append(out, rm)
			continue
		case instructions.MountTypeSSH:
			if m.Source != "" {
				return nil, errors.New("ssh does not support source")
			}
			if rm.ID == "" {
				rm.ID = "default"
			}
			out = append(out, rm)
			continue
		case instructions.MountTypeCache:
			if rm.Sharing == "" {
				rm.Sharing = string(instructions.MountSharingShared)
			}
		}
		target := m.Target
		if !path.IsAbs(path.Clean(target)) {
			wd := s.cfg.Config.WorkingDir
			if wd == "" {
				wd = "/"
			}
			target = path.Join("/", wd, target)
		}
		if target == "/" {
			return nil, fmt.Errorf("invalid mount target %q", target)
		}
		rm.Target = target
		if m.Type == instructions.MountTypeCache && rm.ID == "" {
			rm.ID = path.Clean(m.Target)
		}
		out = append(out, rm)
	}
	return out, nil
}
