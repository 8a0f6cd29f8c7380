package dockerfile

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/buildkit/util/suggest"
	"github.com/moby/patternmatcher"
)

// Warning is one finding of BuildKit's build checks.
type Warning struct {
	File     string
	Line     int    // first line of the instruction the check points at; 0 = none
	RuleName string // e.g. "JSONArgsRecommended"
	Message  string // the rule's message for this instance
	URL      string // the rule's documentation page
}

// String formats w as FILE:LINE: RuleName: Message.
func (w Warning) String() string {
	if w.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", w.File, w.Line, w.RuleName, w.Message)
	}
	return fmt.Sprintf("%s: %s: %s", w.File, w.RuleName, w.Message)
}

// LintOptions steer Lint.
type LintOptions struct {
	BuildArgs map[string]string // --build-arg; BUILDKIT_DOCKERFILE_CHECK replaces the check directive
	// Target is a stage name. "" checks every stage, as docker build --check
	// does; otherwise only the stages the target needs get the checks that
	// run while dispatching instructions.
	Target   string
	Platform string // "linux/amd64" when empty
	// Resolver, when set, gives the configs of external base images: their
	// ENV lets UndefinedVar run in stages built on them, their SHELL quiets
	// JSONArgsRecommended, their ONBUILD triggers run, and their platform is
	// checked. When nil, UndefinedVar is skipped in such stages (the image's
	// variables are unknown) and images are assumed to set no SHELL.
	Resolver ImageResolver
	// Ignore holds the build context's .dockerignore patterns; they enable
	// CopyIgnoredFile.
	Ignore []string
}

// LintViolationError is returned with the warnings when the Dockerfile asks
// for `# check=error=true` and some check fired.
type LintViolationError struct {
	Rules []string // sorted, each once
}

func (e *LintViolationError) Error() string {
	return "lint violation found for rules: " + strings.Join(e.Rules, ", ")
}

// Lint runs BuildKit's build checks over data, the Dockerfile named file,
// without building. Warnings are sorted by line. A Dockerfile that cannot be
// built returns the warnings found before the problem and an *Error, as
// docker build --check reports both. With `# check=error=true` and warnings,
// the error is a *LintViolationError.
func Lint(ctx context.Context, file string, data []byte, opts LintOptions) ([]Warning, error) {
	l := &lintRun{file: file, opts: opts}
	err := l.run(ctx, data)
	sort.SliceStable(l.warnings, func(i, j int) bool { return l.warnings[i].Line < l.warnings[j].Line })
	if err != nil {
		return l.warnings, err
	}
	if l.root.ReturnAsError && len(l.warnings) > 0 {
		rules := make([]string, 0, len(l.warnings))
		for _, w := range l.warnings {
			rules = append(rules, w.RuleName)
		}
		slices.Sort(rules)
		return l.warnings, &LintViolationError{Rules: slices.Compact(rules)}
	}
	return l.warnings, nil
}

// lintRun is the state of one Lint call. It borrows the planner for stage
// linking, target and image resolution so errors read as Plan's do.
type lintRun struct {
	file     string
	opts     LintOptions
	root     *linter.Linter
	warnings []Warning
	p        *planner
	stages   map[*stageState]*lintStage
	ignore   *patternmatcher.PatternMatcher
}

// lintStage is what the dispatch-time checks track per stage.
type lintStage struct {
	envKnown   bool // false: the base image's variables are unknown
	shell      bool // a SHELL is in effect
	workdirSet bool // an earlier WORKDIR in this Dockerfile set the directory
	// the previous CMD, ENTRYPOINT and HEALTHCHECK of this stage
	cmd, entrypoint, healthcheck []parser.Range
}

// nonEnvArgs are build args BuildKit never puts in the environment.
var nonEnvArgs = map[string]bool{
	"BUILDKIT_SBOM_SCAN_CONTEXT": true,
	"BUILDKIT_SBOM_SCAN_STAGE":   true,
}

func (l *lintRun) warn(rule, _, url, msg string, loc []parser.Range) {
	l.warnings = append(l.warnings, Warning{
		File:     l.file,
		Line:     locationOf(l.file, loc).Line,
		RuleName: rule,
		Message:  msg,
		URL:      url,
	})
}

func (l *lintRun) run(ctx context.Context, data []byte) error {
	res, err := parseAST(l.file, data)
	if err != nil {
		// The check directive cannot be honoured before the file parses,
		// so nothing was reported; root must still be usable.
		l.root = linter.New(&linter.Config{SkipAll: true})
		return err
	}
	if err := l.newLinter(data); err != nil {
		return err
	}
	if err := l.compileIgnore(); err != nil {
		return err
	}
	// The parser records empty continuation lines as plain warnings.
	for _, w := range res.Warnings {
		if w.URL == linter.RuleNoEmptyContinuation.URL && w.Location != nil {
			l.root.Run(&linter.RuleNoEmptyContinuation, []parser.Range{*w.Location}, linter.RuleNoEmptyContinuation.Format())
		}
	}
	// instructions.Parse runs the checks that need only one instruction
	// (StageNameCasing, FromAsCasing, MaintainerDeprecated, ...).
	stages, metaArgs, err := instructions.Parse(res.AST, l.root)
	if err != nil {
		return toError(l.file, Location{File: l.file}, err)
	}
	if len(stages) == 0 {
		return &Error{Loc: Location{File: l.file}, Msg: "dockerfile contains no stages to build"}
	}
	l.checkStageNames(stages)
	l.checkCasing(stages)

	plat, err := parsePlatform(l.opts.Platform)
	if err != nil {
		return &Error{Loc: Location{File: l.file}, Msg: err.Error(), Err: err}
	}
	p := &planner{
		file:     l.file,
		opts:     Options{BuildArgs: l.opts.BuildArgs, Target: l.opts.Target, Platform: l.opts.Platform, Resolver: l.opts.Resolver},
		platform: plat,
		lex:      shell.NewLex(res.EscapeToken),
		byName:   map[string]*stageState{},
	}
	l.p = p
	targetName := l.opts.Target
	if targetName == "" {
		targetName = stages[len(stages)-1].Name
	}
	p.global = automaticArgs(plat, targetName, l.opts.BuildArgs)
	l.checkDefaultBaseNames(stages, metaArgs)
	if err := p.metaArgs(metaArgs); err != nil {
		return err
	}
	l.checkFromLines(stages, metaArgs)
	if err := p.addStages(stages); err != nil {
		return err
	}
	if err := p.resolveTarget(); err != nil {
		return err
	}
	for _, s := range p.stages {
		if err := p.linkCommands(s); err != nil {
			return err
		}
	}
	if err := p.checkCycles(); err != nil {
		return err
	}
	reach, err := l.prepare(ctx)
	if err != nil {
		return err
	}
	l.checkImagePlatforms(reach)
	l.stages = map[*stageState]*lintStage{}
	for _, s := range p.stages {
		if !reach[s] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return &Error{Loc: Location{File: l.file}, Msg: err.Error(), Err: err}
		}
		if err := l.dispatchStage(s); err != nil {
			return err
		}
	}
	return nil
}

// newLinter reads the check configuration: the BUILDKIT_DOCKERFILE_CHECK
// build arg if given, else the `# check=` directive.
func (l *lintRun) newLinter(data []byte) error {
	opt, _, loc, _ := parser.ParseDirective("check", data)
	errLoc := locationOf(l.file, loc)
	if v, ok := l.opts.BuildArgs["BUILDKIT_DOCKERFILE_CHECK"]; ok {
		opt, errLoc = v, Location{File: l.file}
	}
	cfg, err := linter.ParseLintOptions(opt)
	if err != nil {
		l.root = linter.New(&linter.Config{SkipAll: true})
		return &Error{Loc: errLoc, Msg: "failed to parse check options: " + err.Error(), Err: err}
	}
	cfg.Warn = l.warn
	l.root = linter.New(cfg)
	return nil
}

// compileIgnore prepares CopyIgnoredFile. Like BuildKit it stays silent
// when the patterns have exclusions ("!x"): whether a path under an
// excluded directory is re-included cannot be told without the context.
func (l *lintRun) compileIgnore() error {
	var pats []string
	for _, p := range l.opts.Ignore {
		p = strings.TrimSpace(p)
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimLeft(strings.TrimPrefix(p, "!"), "/")
		if p == "" {
			continue
		}
		if neg {
			p = "!" + p
		}
		pats = append(pats, p)
	}
	if len(pats) == 0 {
		return nil
	}
	pm, err := patternmatcher.New(pats)
	if err != nil {
		return &Error{Loc: Location{File: l.file}, Msg: "parsing .dockerignore patterns: " + err.Error(), Err: err}
	}
	if !pm.Exclusions() {
		l.ignore = pm
	}
	return nil
}

// reservedStageNames may not name a stage.
var reservedStageNames = []string{"context", "scratch"}

func (l *lintRun) checkStageNames(stages []instructions.Stage) {
	seen := map[string]bool{}
	for _, st := range stages {
		if st.Name == "" {
			continue
		}
		if slices.Contains(reservedStageNames, st.Name) {
			l.root.Run(&linter.RuleReservedStageName, st.Location, linter.RuleReservedStageName.Format(st.Name))
		}
		if seen[st.Name] {
			l.root.Run(&linter.RuleDuplicateStageName, st.Location, linter.RuleDuplicateStageName.Format(st.Name))
		}
		seen[st.Name] = true
	}
}

// checkCasing wants every instruction keyword in one case: the case most
// keywords that are consistently cased use (upper on a tie).
func (l *lintRun) checkCasing(stages []instructions.Stage) {
	consistent := func(s string) bool { return s == strings.ToLower(s) || s == strings.ToUpper(s) }
	lower, upper := 0, 0
	count := func(s string) {
		switch {
		case !consistent(s):
		case s == strings.ToLower(s):
			lower++
		default:
			upper++
		}
	}
	for _, st := range stages {
		count(st.OrigCmd)
		for _, c := range st.Commands {
			count(c.Name())
		}
	}
	majorityLower := lower > upper
	check := func(s string, loc []parser.Range) {
		want := ""
		if majorityLower && s != strings.ToLower(s) {
			want = "lowercase"
		} else if !majorityLower && s != strings.ToUpper(s) {
			want = "uppercase"
		}
		if want != "" {
			l.root.Run(&linter.RuleConsistentInstructionCasing, loc, linter.RuleConsistentInstructionCasing.Format(s, want))
		}
	}
	for _, st := range stages {
		check(st.OrigCmd, st.Location)
		for _, c := range st.Commands {
			check(c.Name(), c.Location())
		}
	}
}

// checkDefaultBaseNames expands every FROM with the meta ARGs' defaults
// only (no --build-arg) and wants a valid image reference: a build that
// forgets the arg would otherwise fail.
func (l *lintRun) checkDefaultBaseNames(stages []instructions.Stage, metaArgs []instructions.ArgCommand) {
	lex := l.p.lex
	env := l.p.global.clone()
	for _, cmd := range metaArgs {
		for _, kv := range cmd.Args {
			if kv.Value == nil {
				continue
			}
			v, _, err := lex.ProcessWord(*kv.Value, env)
			if err != nil {
				return // the build fails on this with a better message
			}
			env.set(kv.Key, v)
		}
	}
	for _, st := range stages {
		v, _, err := lex.ProcessWord(st.BaseName, env)
		if err != nil {
			return
		}
		if _, err := name.ParseReference(v); err != nil {
			l.root.Run(&linter.RuleInvalidDefaultArgInFrom, st.Location, linter.RuleInvalidDefaultArgInFrom.Format(st.BaseName))
		}
	}
}

// checkFromLines runs the checks on FROM's arguments: undeclared args,
// --platform=$TARGETPLATFORM and constant platforms. A comment above FROM
// may skip them.
func (l *lintRun) checkFromLines(stages []instructions.Stage, metaArgs []instructions.ArgCommand) {
	lex, global := l.p.lex, l.p.global
	declared := map[string]bool{}
	for _, k := range global.Keys() {
		declared[k] = true
	}
	for _, cmd := range metaArgs {
		for _, kv := range cmd.Args {
			declared[kv.Key] = true
		}
	}
	options := sortedKeys(declared)
	undeclared := func(lint *linter.Linter, unmatched map[string]struct{}, loc []parser.Range) {
		for _, k := range sortedKeys(unmatched) {
			if declared[k] {
				continue
			}
			hint, _ := suggest.Search(k, options, true)
			lint.Run(&linter.RuleUndefinedArgInFrom, loc, linter.RuleUndefinedArgInFrom.Format(k, hint))
		}
	}
	for _, st := range stages {
		lint := l.root.WithMergedConfigFromComments(st.Comments)
		if m, err := lex.ProcessWordWithMatches(st.BaseName, global); err == nil {
			undeclared(lint, m.Unmatched, st.Location)
		}
		if st.Platform == "" {
			continue
		}
		m, err := lex.ProcessWordWithMatches(st.Platform, global)
		if err != nil {
			continue
		}
		undeclared(lint, m.Unmatched, st.Location)
		if _, ok := m.Matched["TARGETPLATFORM"]; ok && len(m.Matched) == 1 && len(m.Unmatched) == 0 {
			if tp, _ := global.Get("TARGETPLATFORM"); m.Result == tp {
				lint.Run(&linter.RuleRedundantTargetPlatform, st.Location, linter.RuleRedundantTargetPlatform.Format(st.Platform))
			}
		}
		if len(m.Matched) == 0 && len(m.Unmatched) == 0 {
			// A constant platform is fine when the stage name says which
			// platform it is for (e.g. "build-arm64").
			if pl, err := parsePlatform(m.Result); err == nil && !strings.Contains(st.Name, pl.OS) && !strings.Contains(st.Name, pl.Arch) {
				lint.Run(&linter.RuleFromPlatformFlagConstDisallowed, st.Location, linter.RuleFromPlatformFlagConstDisallowed.Format(m.Result))
			}
		}
	}
}

// prepare picks the stages to dispatch (all of them without a target),
// resolves their base images when a resolver is set, and adds inherited
// ONBUILD triggers, repeating while triggers pull in more stages.
func (l *lintRun) prepare(ctx context.Context) (map[*stageState]bool, error) {
	p := l.p
	for {
		reach := map[*stageState]bool{}
		if l.opts.Target == "" {
			for _, s := range p.stages {
				reach[s] = true
			}
		} else {
			reach = p.reachable()
		}
		if l.opts.Resolver != nil {
			if err := p.resolveImages(ctx, reach); err != nil {
				return nil, err
			}
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

// checkImagePlatforms compares each resolved base image's platform with
// the platform the stage builds for.
func (l *lintRun) checkImagePlatforms(reach map[*stageState]bool) {
	for _, s := range l.p.stages {
		cfg := s.imageCfg
		if !reach[s] || cfg == nil || cfg.OS == "" || cfg.Architecture == "" {
			continue
		}
		want, err := parsePlatform(s.platform)
		if err != nil || (want.OS == cfg.OS && want.Arch == cfg.Architecture) {
			continue
		}
		got := platform{OS: cfg.OS, Arch: cfg.Architecture, Variant: cfg.Variant}
		msg := linter.RuleInvalidBaseImagePlatform.Format(s.baseName, want.String(), got.String())
		l.root.Run(&linter.RuleInvalidBaseImagePlatform, s.inst.Location, msg)
	}
}

// dispatchStage starts a stage's environment from its base and runs the
// dispatch-time checks over its instructions.
func (l *lintRun) dispatchStage(s *stageState) error {
	ls := &lintStage{}
	l.stages[s] = ls
	switch {
	case s.base != nil:
		s.env = s.base.env.clone()
		s.buildArgs = slices.Clone(s.base.buildArgs)
		if b := l.stages[s.base]; b != nil {
			ls.envKnown, ls.shell, ls.workdirSet = b.envKnown, b.shell, b.workdirSet
		}
	case s.baseName == scratchName:
		s.env = newEnvList(nil)
		ls.envKnown = true
	case s.imageCfg != nil:
		s.env = newEnvList(s.imageCfg.Config.Env)
		ls.envKnown = true
		ls.shell = len(s.imageCfg.Config.Shell) > 0
	default:
		s.env = newEnvList(nil)
	}
	if s.base == nil {
		if _, ok := s.env.Get("PATH"); !ok {
			s.env.set("PATH", defaultPath)
		}
	}
	// Marked before its instructions, as BuildKit does: COPY --from
	// a later stage is an error, reading itself was caught as a cycle.
	s.dispatched = true
	for _, c := range s.cmds {
		if err := l.dispatch(s, ls, c); err != nil {
			return l.p.errAt(c.loc, err)
		}
	}
	return nil
}

// dispatch expands one instruction as the build would and runs the checks
// BuildKit makes while converting it. A comment above it may skip some.
func (l *lintRun) dispatch(s *stageState, ls *lintStage, c command) error {
	p := l.p
	lint := l.root.WithMergedConfigFromComments(c.Comments())
	loc := c.Location()
	report := func(unmatched map[string]struct{}) { l.undefinedVars(lint, s, ls, loc, unmatched) }
	if ex, ok := c.Command.(instructions.SupportsSingleWordExpansion); ok {
		if _, isArg := c.Command.(*instructions.ArgCommand); !isArg {
			err := ex.Expand(func(word string) (string, error) {
				v, unmatched, err := p.lex.ProcessWord(word, s.env)
				report(unmatched)
				return v, err
			})
			if err != nil {
				return err
			}
		}
	}
	if ex, ok := c.Command.(instructions.SupportsSingleWordExpansionRaw); ok {
		raw := shell.NewLex('\\')
		raw.SkipProcessQuotes = true
		err := ex.ExpandRaw(func(word string) (string, error) {
			v, unmatched, err := raw.ProcessWord(word, s.env)
			report(unmatched)
			return v, err
		})
		if err != nil {
			return err
		}
	}

	switch cmd := c.Command.(type) {
	case *instructions.EnvCommand:
		for _, kv := range cmd.Env {
			if kv.NoDelim {
				lint.Run(&linter.RuleLegacyKeyValueFormat, loc, linter.RuleLegacyKeyValueFormat.Format(cmd.Name()))
			}
			checkSecretName(lint, "ENV", kv.Key, loc)
			s.env.set(kv.Key, kv.Value)
		}
	case *instructions.LabelCommand:
		for _, kv := range cmd.Labels {
			if kv.NoDelim {
				lint.Run(&linter.RuleLegacyKeyValueFormat, loc, linter.RuleLegacyKeyValueFormat.Format(cmd.Name()))
			}
		}
	case *instructions.ArgCommand:
		return l.dispatchArg(s, lint, cmd, report)
	case *instructions.WorkdirCommand:
		// Only the first WORKDIR counts: later relative ones build on it.
		if !ls.workdirSet && !path.IsAbs(cmd.Path) {
			lint.Run(&linter.RuleWorkdirRelativePath, loc, linter.RuleWorkdirRelativePath.Format(cmd.Path))
		}
		ls.workdirSet = true
	case *instructions.CmdCommand:
		usedOnce(lint, cmd.Name(), &ls.cmd, loc)
		if cmd.PrependShell && !ls.shell {
			lint.Run(&linter.RuleJSONArgsRecommended, loc, linter.RuleJSONArgsRecommended.Format(cmd.Name()))
		}
	case *instructions.EntrypointCommand:
		usedOnce(lint, cmd.Name(), &ls.entrypoint, loc)
		if cmd.PrependShell && !ls.shell {
			lint.Run(&linter.RuleJSONArgsRecommended, loc, linter.RuleJSONArgsRecommended.Format(cmd.Name()))
		}
	case *instructions.HealthCheckCommand:
		usedOnce(lint, cmd.Name(), &ls.healthcheck, loc)
	case *instructions.ShellCommand:
		ls.shell = len(cmd.Shell) > 0
	case *instructions.ExposeCommand:
		return l.checkExpose(s, lint, cmd, loc)
	case *instructions.VolumeCommand:
		if slices.Contains(cmd.Volumes, "") {
			return fmt.Errorf("VOLUME specified can not be an empty string")
		}
	case *instructions.AddCommand:
		l.checkIgnored(lint, "Add", cmd.SourcePaths, loc)
	case *instructions.CopyCommand:
		if len(c.sources) > 0 {
			if src := c.sources[0].stage; src != nil && !src.dispatched {
				return fmt.Errorf("cannot copy from stage %q, it needs to be defined before current stage %q", cmd.From, s.label)
			}
			break
		}
		l.checkIgnored(lint, "Copy", cmd.SourcePaths, loc)
	}
	return nil
}

// undefinedVars reports variables an instruction used that nothing set.
// Declared ARGs without a value count as set.
func (l *lintRun) undefinedVars(lint *linter.Linter, s *stageState, ls *lintStage, loc []parser.Range, unmatched map[string]struct{}) {
	if !ls.envKnown || len(unmatched) == 0 {
		return
	}
	for _, k := range sortedKeys(unmatched) {
		if nonEnvArgs[k] || slices.ContainsFunc(s.buildArgs, func(a argValue) bool { return a.key == k }) {
			continue
		}
		hint, _ := suggest.Search(k, s.env.Keys(), true)
		lint.Run(&linter.RuleUndefinedVar, loc, linter.RuleUndefinedVar.Format(k, hint))
	}
}

// dispatchArg declares a stage's ARGs: a --build-arg value wins, else the
// default (expanded), else the global value of the same name.
func (l *lintRun) dispatchArg(s *stageState, lint *linter.Linter, cmd *instructions.ArgCommand, report func(map[string]struct{})) error {
	for _, kv := range cmd.Args {
		checkSecretName(lint, "ARG", kv.Key, cmd.Location())
		var val *string
		if v, ok := l.opts.BuildArgs[kv.Key]; ok {
			val = &v
		} else if kv.Value != nil {
			v, unmatched, err := l.p.lex.ProcessWord(*kv.Value, s.env)
			report(unmatched)
			if err != nil {
				return err
			}
			val = &v
		} else if v, ok := l.p.global.Get(kv.Key); ok {
			val = &v
		}
		if val != nil && !nonEnvArgs[kv.Key] {
			s.env.set(kv.Key, *val)
		}
		s.buildArgs = append(s.buildArgs, argValue{key: kv.Key, value: val})
	}
	return nil
}

// checkExpose wants lowercase protocols and neither IP addresses nor host
// ports: EXPOSE only documents container ports.
func (l *lintRun) checkExpose(s *stageState, lint *linter.Linter, cmd *instructions.ExposeCommand, loc []parser.Range) error {
	for _, word := range cmd.Ports {
		ports, err := l.p.lex.ProcessWords(word, s.env)
		if err != nil {
			return err
		}
		for _, raw := range ports {
			ip, host, container := splitPortSpec(raw)
			port, proto, _ := strings.Cut(container, "/")
			switch strings.ToLower(proto) {
			case "", "tcp", "udp", "sctp":
			default:
				port = ""
			}
			if port == "" {
				// Malformed beyond what the checks look at.
				if _, err := parsePort(raw); err != nil {
					return err
				}
				continue
			}
			if proto != strings.ToLower(proto) {
				lint.Run(&linter.RuleExposeProtoCasing, loc, linter.RuleExposeProtoCasing.Format(raw))
			}
			if ip != "" || host != "" {
				lint.Run(&linter.RuleExposeInvalidFormat, loc, linter.RuleExposeInvalidFormat.Format(raw))
			}
			if _, err := parsePort(raw); err != nil {
				return err
			}
		}
	}
	return nil
}

// splitPortSpec splits [ip:][hostport:]port[/proto].
func splitPortSpec(raw string) (ip, host, container string) {
	parts := strings.Split(raw, ":")
	n := len(parts)
	switch n {
	case 1:
		return "", "", parts[0]
	case 2:
		return "", parts[0], parts[1]
	default:
		return strings.Join(parts[:n-2], ":"), parts[n-2], parts[n-1]
	}
}

// checkIgnored reports build-context sources that .dockerignore hides, so
// the copy would fail or copy less than it says.
func (l *lintRun) checkIgnored(lint *linter.Linter, verb string, sources []string, loc []parser.Range) {
	if l.ignore == nil {
		return
	}
	for _, src := range sources {
		if strings.Contains(src, "://") || strings.HasPrefix(src, "git@") {
			continue // URLs and git repositories are not read from the context
		}
		rel := strings.TrimLeft(path.Clean(strings.ReplaceAll(src, "\\", "/")), "/")
		if rel == "" || rel == "." {
			// The context root is only "ignored" when everything is.
			if !l.ignoresEverything() {
				continue
			}
			rel = "."
		}
		if ok, err := l.ignore.MatchesOrParentMatches(rel); err == nil && ok {
			lint.Run(&linter.RuleCopyIgnoredFile, loc, linter.RuleCopyIgnoredFile.Format(verb, path.Clean(src)))
		}
	}
}

func (l *lintRun) ignoresEverything() bool {
	for _, p := range l.ignore.Patterns() {
		switch p.String() {
		case "*", "**", "**/*":
			if !p.Exclusion() {
				return true
			}
		}
	}
	return false
}

// usedOnce reports the previous instruction of a kind that only takes
// effect once per stage: that one is ignored.
func usedOnce(lint *linter.Linter, cmdName string, prev *[]parser.Range, loc []parser.Range) {
	if *prev != nil {
		lint.Run(&linter.RuleMultipleInstructionsDisallowed, *prev, linter.RuleMultipleInstructionsDisallowed.Format(cmdName))
	}
	*prev = loc
}

// secretName matches names that look like they hold a secret: one of the
// words as the whole name or as one of its _-separated parts.
// secretAllowed words mark names that are about a secret but hold none.
var (
	secretName    = regexp.MustCompile(`(?i)(?:_|^)(?:apikey|auth|credentials?|key|password|pword|passwd|secret|token)(?:_|$)`)
	secretAllowed = regexp.MustCompile(`(?i)(?:_|^)(?:public|file|version)(?:_|$)`)
)

func checkSecretName(lint *linter.Linter, instruction, key string, loc []parser.Range) {
	if secretName.MatchString(key) && !secretAllowed.MatchString(key) {
		lint.Run(&linter.RuleSecretsUsedInArgOrEnv, loc, linter.RuleSecretsUsedInArgOrEnv.Format(instruction, key))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
