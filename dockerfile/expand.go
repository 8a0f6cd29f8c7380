package dockerfile

import (
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// defaultPath is the PATH BuildKit gives Linux images that lack one.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// envList is an ordered KEY=VALUE environment. Setting a key moves it to
// the end, like BuildKit's llb.EnvList, so Step.Env orders match.
type envList struct {
	kv []string
}

var _ shell.EnvGetter = (*envList)(nil)

func newEnvList(kv []string) *envList {
	e := &envList{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		e.set(k, v)
	}
	return e
}

func (e *envList) index(k string) int {
	for i, s := range e.kv {
		if key, _, _ := strings.Cut(s, "="); key == k {
			return i
		}
	}
	return -1
}

// Get implements shell.EnvGetter.
func (e *envList) Get(k string) (string, bool) {
	if i := e.index(k); i >= 0 {
		_, v, _ := strings.Cut(e.kv[i], "=")
		return v, true
	}
	return "", false
}

// Keys implements shell.EnvGetter.
func (e *envList) Keys() []string {
	keys := make([]string, len(e.kv))
	for i, s := range e.kv {
		keys[i], _, _ = strings.Cut(s, "=")
	}
	return keys
}

func (e *envList) set(k, v string) {
	if i := e.index(k); i >= 0 {
		e.kv = slices.Delete(e.kv, i, i+1)
	}
	e.kv = append(e.kv, k+"="+v)
}

func (e *envList) clone() *envList { return &envList{kv: slices.Clone(e.kv)} }

func (e *envList) slice() []string { return slices.Clone(e.kv) }

// addEnv sets k in an image config Env, replacing in place like BuildKit.
func addEnv(env []string, k, v string) []string {
	for i, s := range env {
		if key, _, _ := strings.Cut(s, "="); key == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// platform is an os/arch[/variant] triple.
type platform struct {
	OS, Arch, Variant string
}

func parsePlatform(s string) (platform, error) {
	if s == "" {
		s = "linux/amd64"
	}
	parts := strings.Split(strings.ToLower(s), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return platform{}, fmt.Errorf("invalid platform %q: want os/arch[/variant]", s)
	}
	p := platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

func (p platform) String() string {
	if p.Variant != "" {
		return p.OS + "/" + p.Arch + "/" + p.Variant
	}
	return p.OS + "/" + p.Arch
}

// automaticArgs are the args BuildKit defines in the global scope. The
// build platform is the host's: steps run natively.
func automaticArgs(target platform, targetStage string, overrides map[string]string) *envList {
	build := platform{OS: "linux", Arch: runtime.GOARCH}
	if targetStage == "" {
		targetStage = "default"
	}
	kv := [][2]string{
		{"BUILDPLATFORM", build.String()},
		{"BUILDOS", build.OS},
		{"BUILDOSVERSION", ""},
		{"BUILDARCH", build.Arch},
		{"BUILDVARIANT", build.Variant},
		{"TARGETPLATFORM", target.String()},
		{"TARGETOS", target.OS},
		{"TARGETOSVERSION", ""},
		{"TARGETARCH", target.Arch},
		{"TARGETVARIANT", target.Variant},
		{"TARGETSTAGE", targetStage},
	}
	env := &envList{}
	for _, p := range kv {
		v := p[1]
		if o, ok := overrides[p[0]]; ok {
			v = o
		}
		env.set(p[0], v)
	}
	return env
}

// metaArgs evaluates the ARGs before the first FROM into the global scope.
func (p *planner) metaArgs(cmds []instructions.ArgCommand) error {
	for _, cmd := range cmds {
		for _, kv := range cmd.Args {
			if v, ok := p.opts.BuildArgs[kv.Key]; ok {
				p.global.set(kv.Key, v)
				continue
			}
			if kv.Value == nil {
				continue
			}
			v, _, err := p.lex.ProcessWord(*kv.Value, p.global)
			if err != nil {
				return p.errAt(p.loc(cmd.Location()), err)
			}
			p.global.set(kv.Key, v)
		}
	}
	return nil
}

// expander expands words against env with the Dockerfile's lexer.
func (p *planner) expander(env shell.EnvGetter) instructions.SingleWordExpander {
	return func(word string) (string, error) {
		v, _, err := p.lex.ProcessWord(word, env)
		return v, err
	}
}

// rawExpander expands heredoc bodies: variables and escapes, but quotes
// are kept as written.
func rawExpander(env shell.EnvGetter) instructions.SingleWordExpander {
	lex := shell.NewLex('\\')
	lex.SkipProcessQuotes = true
	return func(word string) (string, error) {
		v, _, err := lex.ProcessWord(word, env)
		return v, err
	}
}

// proxyEnv returns the proxy variables set by predefined build args, in
// both cases as BuildKit's executor does.
func proxyEnv(args map[string]string) []string {
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the last spelling in sort order wins, as in BuildKit
	var out []string
	for _, name := range []string{"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"} {
		var val string
		for _, k := range keys {
			if strings.EqualFold(k, name) {
				val = args[k]
			}
		}
		if val != "" {
			out = append(out, name+"="+val, strings.ToLower(name)+"="+val)
		}
	}
	return out
}
