package dockerfile

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/sync/errgroup"
)

// scratchName is the base name of an empty stage.
const scratchName = "scratch"

// planner is the state of one Plan call.
type planner struct {
	file     string
	opts     Options
	platform platform
	lex      *shell.Lex
	global   *envList // meta ARGs and automatic args
	stages   []*stageState
	byName   map[string]*stageState // lower-cased stage names
	target   *stageState
}

// stageState is a stage being planned.
type stageState struct {
	idx      int
	inst     instructions.Stage
	name     string // lower-cased AS name, or ""
	label    string // name for messages: AS name or stage-N
	baseName string // FROM after expansion
	platform string
	base     *stageState // FROM names an earlier stage
	cmds     []command
	deps     []dep

	imageCfg   *v1.ConfigFile // resolved external base
	resolved   bool
	triggered  bool // ONBUILD triggers of the base were added to cmds
	dispatched bool
	out        *Stage

	// dispatch state
	cfg       *v1.ConfigFile
	env       *envList // config Env plus ARG values: what expansion and RUN see
	buildArgs []argValue
	cmdSet    bool // CMD given in this stage: ENTRYPOINT keeps it
}

// dep is an edge from a stage to a stage it reads.
type dep struct {
	stage *stageState
	cmd   instructions.Command
}

// source is where COPY --from or a RUN mount reads: a stage, an image, or
// (both empty) the build context.
type source struct {
	stage *stageState
	image string
}

// command is an instruction with the sources it reads.
type command struct {
	instructions.Command
	sources []source
	onbuild bool
	loc     Location
}

// argValue is an ARG in scope; value nil means declared but unset.
type argValue struct {
	key   string
	value *string
}

// Plan resolves stages and arguments and plans the stages the target needs.
func (d *Dockerfile) Plan(ctx context.Context, opts Options) (*Plan, error) {
	pf, err := d.instructions()
	if err != nil {
		return nil, err
	}
	plat, err := parsePlatform(opts.Platform)
	if err != nil {
		return nil, &Error{Loc: Location{File: d.file}, Msg: err.Error(), Err: err}
	}
	p := &planner{
		file:     d.file,
		opts:     opts,
		platform: plat,
		lex:      shell.NewLex(d.escape),
		byName:   map[string]*stageState{},
	}
	targetName := opts.Target
	if targetName == "" {
		targetName = pf.stages[len(pf.stages)-1].Name
	}
	p.global = automaticArgs(plat, targetName, opts.BuildArgs)
	if err := p.metaArgs(pf.metaArgs); err != nil {
		return nil, err
	}
	if err := p.addStages(pf.stages); err != nil {
		return nil, err
	}
	if err := p.resolveTarget(); err != nil {
		return nil, err
	}
	for _, s := range p.stages {
		if err := p.linkCommands(s); err != nil {
			return nil, err
		}
	}
	if err := p.checkCycles(); err != nil {
		return nil, err
	}
	reach, err := p.prepare(ctx)
	if err != nil {
		return nil, err
	}
	plan := &Plan{}
	for _, s := range p.stages {
		if !reach[s] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, &Error{Loc: Location{File: d.file}, Msg: err.Error(), Err: err}
		}
		if err := p.dispatchStage(s); err != nil {
			return nil, err
		}
		plan.Stages = append(plan.Stages, s.out)
	}
	plan.Target = p.target.out
	return plan, nil
}

func (p *planner) loc(r []parser.Range) Location { return locationOf(p.file, r) }

// errAt ties err to loc unless it already carries a location.
func (p *planner) errAt(loc Location, err error) error {
	return toErrorAt(p.file, loc, err)
}

// toErrorAt is toError, but loc wins over locations buildkit recorded
// (those of re-parsed ONBUILD triggers are meaningless).
func toErrorAt(file string, loc Location, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	out := toError(file, loc, err).(*Error)
	out.Loc = loc
	return out
}

func (p *planner) errorf(loc Location, format string, a ...any) error {
	return &Error{Loc: loc, Msg: fmt.Sprintf(format, a...)}
}

// addStages expands FROM lines with the global args and links stage bases.
func (p *planner) addStages(stages []instructions.Stage) error {
	for i, st := range stages {
		loc := p.loc(st.Location)
		base, _, err := p.lex.ProcessWord(st.BaseName, p.global)
		if err != nil {
			return p.errAt(loc, err)
		}
		if base == "" {
			return p.errorf(loc, "base name (%s) should not be blank", st.BaseName)
		}
		s := &stageState{idx: i, inst: st, name: st.Name, label: st.Name, baseName: base, platform: p.platform.String()}
		if s.label == "" {
			s.label = fmt.Sprintf("stage-%d", i)
		}
		if st.Platform != "" {
			v, _, err := p.lex.ProcessWord(st.Platform, p.global)
			if err != nil {
				return p.errAt(loc, fmt.Errorf("failed to process arguments for platform %s: %w", st.Platform, err))
			}
			if v == "" {
				return p.errorf(loc, "empty platform value from expression %s", st.Platform)
			}
			pl, err := parsePlatform(v)
			if err != nil {
				return p.errAt(loc, err)
			}
			s.platform = pl.String()
		}
		// Like BuildKit, FROM matches earlier stages by exact text against
		// lower-cased names: "FROM STAGE0" is an image reference.
		if b, ok := p.byName[base]; ok {
			s.base = b
			s.deps = append(s.deps, dep{stage: b})
			if st.Platform == "" {
				s.platform = b.platform
			}
		} else if base != scratchName {
			if _, err := name.ParseReference(base); err != nil {
				return p.errAt(loc, fmt.Errorf("failed to parse stage name %q: %w", base, err))
			}
		}
		if st.Name != "" {
			p.byName[strings.ToLower(st.Name)] = s
		}
		p.stages = append(p.stages, s)
	}
	return nil
}

func (p *planner) resolveTarget() error {
	if p.opts.Target == "" {
		p.target = p.stages[len(p.stages)-1]
		return nil
	}
	t, ok := p.byName[strings.ToLower(p.opts.Target)]
	if !ok {
		return p.errorf(Location{File: p.file}, "target stage %q could not be found", p.opts.Target)
	}
	p.target = t
	return nil
}

// linkCommands wraps a stage's instructions and records what they read.
func (p *planner) linkCommands(s *stageState) error {
	for _, c := range s.inst.Commands {
		cmd, err := p.newCommand(c, p.loc(c.Location()))
		if err != nil {
			return err
		}
		p.addDeps(s, cmd)
		s.cmds = append(s.cmds, cmd)
	}
	return nil
}

func (p *planner) addDeps(s *stageState, cmd command) {
	for _, src := range cmd.sources {
		if src.stage != nil {
			s.deps = append(s.deps, dep{stage: src.stage, cmd: cmd.Command})
		}
	}
}

// newCommand finds the sources of COPY --from and RUN --mount from=.
func (p *planner) newCommand(c instructions.Command, loc Location) (command, error) {
	cmd := command{Command: c, loc: loc}
	switch c := c.(type) {
	case *instructions.CopyCommand:
		if c.From == "" {
			break
		}
		v, _, err := p.lex.ProcessWord(c.From, &envList{})
		if err != nil {
			return cmd, p.errAt(loc, err)
		}
		if v != c.From {
			return cmd, p.errorf(loc, "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround")
		}
		if i, err := strconv.Atoi(c.From); err == nil {
			if i < 0 || i >= len(p.stages) {
				return cmd, p.errorf(loc, "invalid stage index %d", i)
			}
			cmd.sources = []source{{stage: p.stages[i]}}
		} else if st, ok := p.byName[strings.ToLower(c.From)]; ok {
			cmd.sources = []source{{stage: st}}
		} else {
			if _, err := name.ParseReference(c.From); err != nil {
				return cmd, p.errAt(loc, fmt.Errorf("failed to parse stage name %q: %w", c.From, err))
			}
			cmd.sources = []source{{image: c.From}}
		}
	case *instructions.RunCommand:
		for _, m := range instructions.GetMounts(c) {
			var src source
			if m.From != "" {
				if st, ok := p.byName[strings.ToLower(m.From)]; ok {
					src.stage = st
				} else {
					src.image = m.From
				}
			}
			cmd.sources = append(cmd.sources, src)
		}
	}
	return cmd, nil
}

// checkCycles rejects stages that (transitively) read themselves.
func (p *planner) checkCycles() error {
	const (
		unseen = iota
		active
		done
	)
	state := map[*stageState]int{}
	var visit func(s *stageState) (instructions.Command, bool)
	visit = func(s *stageState) (instructions.Command, bool) {
		state[s] = active
		for _, d := range s.deps {
			switch state[d.stage] {
			case active:
				return d.cmd, true
			case unseen:
				if c, ok := visit(d.stage); ok {
					return c, true
				}
			}
		}
		state[s] = done
		return nil, false
	}
	for _, s := range p.stages {
		if state[s] != unseen {
			continue
		}
		if c, ok := visit(s); ok {
			loc := p.loc(s.inst.Location)
			if c != nil {
				loc = p.loc(c.Location())
			}
			return p.errorf(loc, "circular dependency detected on stage: %s", s.label)
		}
	}
	return nil
}

// reachable is the set of stages the target needs.
func (p *planner) reachable() map[*stageState]bool {
	seen := map[*stageState]bool{}
	var walk func(s *stageState)
	walk = func(s *stageState) {
		if seen[s] {
			return
		}
		seen[s] = true
		for _, d := range s.deps {
			walk(d.stage)
		}
	}
	walk(p.target)
	return seen
}

// triggerReachable adds the ONBUILD triggers of the reached stages not yet
// triggered (from a base stage or image) and reports whether that made
// them depend on more stages.
func (p *planner) triggerReachable(reach map[*stageState]bool) (bool, error) {
	grew := false
	for _, s := range p.stages {
		if !reach[s] || s.triggered {
			continue
		}
		s.triggered = true
		var triggers []string
		if s.base != nil {
			for _, c := range s.base.inst.Commands {
				if ob, ok := c.(*instructions.OnbuildCommand); ok {
					triggers = append(triggers, ob.Expression)
				}
			}
		} else if s.imageCfg != nil {
			triggers = s.imageCfg.Config.OnBuild
		}
		n := len(s.deps)
		if err := p.addTriggers(s, triggers); err != nil {
			return false, err
		}
		grew = grew || len(s.deps) > n
	}
	return grew, nil
}

// prepare resolves the base images of the needed stages and adds their
// ONBUILD triggers, repeating while triggers pull in more stages.
func (p *planner) prepare(ctx context.Context) (map[*stageState]bool, error) {
	for {
		reach := p.reachable()
		if err := p.resolveImages(ctx, reach); err != nil {
			return nil, err
		}
		grew, err := p.triggerReachable(reach)
		if err != nil {
			return nil, err
		}
		if !grew {
			return reach, nil
		}
	}
}

// resolveImages fetches the configs of external bases, in parallel.
func (p *planner) resolveImages(ctx context.Context, reach map[*stageState]bool) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, s := range p.stages {
		if !reach[s] || s.resolved || s.base != nil || s.baseName == scratchName {
			continue
		}
		s.resolved = true
		loc := p.loc(s.inst.Location)
		g.Go(func() error {
			if p.opts.Resolver == nil {
				return p.errorf(loc, "%s: no image resolver configured", s.baseName)
			}
			cfg, err := p.opts.Resolver.ResolveImageConfig(gctx, s.baseName)
			if err != nil {
				return &Error{Loc: loc, Msg: s.baseName + ": " + err.Error(), Err: err}
			}
			if cfg == nil {
				return p.errorf(loc, "%s: resolver returned no config", s.baseName)
			}
			s.imageCfg = cfg.DeepCopy()
			return nil
		})
	}
	return g.Wait()
}
