package dockerfile

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Location is where an instruction stands in a Dockerfile.
type Location struct {
	File    string
	Line    int // first line, 1-based
	EndLine int
}

// Error is a Dockerfile error tied to a line. It prints as FILE:LINE: message.
type Error struct {
	Loc Location
	Msg string
	Err error // the underlying error, if any (see Unwrap)
}

func (e *Error) Error() string {
	if e.Loc.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Loc.File, e.Loc.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Loc.File, e.Msg)
}

// ImageResolver gives the config of an external image named in FROM (after
// ARG expansion, exactly as written, e.g. "busybox" or "reg:5000/x@sha256:..").
// It is never called for "scratch" or for stage names.
type ImageResolver interface {
	ResolveImageConfig(ctx context.Context, ref string) (*v1.ConfigFile, error)
}

// Options steer planning.
type Options struct {
	BuildArgs map[string]string // --build-arg; a key with no value in the map is unset
	Target    string            // stage name or ""; "" = last stage
	Platform  string            // "linux/amd64" when empty
	Resolver  ImageResolver
}

// Plan is a planned build: the stages the target needs, each after the
// stages it depends on.
type Plan struct {
	Stages []*Stage
	Target *Stage
}

// Stage is one FROM block.
type Stage struct {
	Index     int // position in the Dockerfile, 0-based
	Name      string
	Loc       Location
	BaseImage string // external image ref after expansion; "" for scratch or a stage base
	BaseStage *Stage // set when FROM names an earlier stage
	Scratch   bool
	Platform  string
	// BaseConfig is the config the stage starts from: the image's config,
	// the base stage's final Config, or a scratch default (PATH set, as BuildKit).
	BaseConfig *v1.ConfigFile
	Steps      []*Step
	Config     *v1.ConfigFile // after the last step
	Deps       []*Stage       // every stage this one reads: base, COPY --from, RUN --mount from
}

// StepKind says what the builder must do for a step.
type StepKind int

const (
	// Meta steps only change the config (ENV, LABEL, CMD, ...): no layer.
	Meta StepKind = iota
	// Run executes a command in the sandbox.
	Run
	// Copy is COPY or ADD.
	Copy
	// Workdir creates the working directory (owned by the current user).
	Workdir
)

// Step is one instruction after expansion. ONBUILD triggers of the base image
// come first in a stage's steps, with the location of the FROM line.
type Step struct {
	Kind StepKind
	Loc  Location
	// Text is the instruction after expansion as history's created_by shows
	// it, e.g. "RUN /bin/sh -c make # buildkit", "COPY a /b # buildkit",
	// "ENV A=1", "WORKDIR /app". It also feeds the cache key.
	Text   string
	Config *v1.ConfigFile // the image config after this step
	// Env is the environment the step sees: config Env plus the build args
	// in scope that ENV does not override (build args never reach Config).
	Env     []string
	Run     *RunStep
	Copy    *CopyStep
	Workdir string // Kind == Workdir: absolute path to create
	User    string // the USER in effect, unresolved ("name[:group]" or "uid[:gid]"; "" = root)
}

// InlineFile is a file whose content is in the Dockerfile (a heredoc).
type InlineFile struct {
	Name string // for COPY: the heredoc's destination-relative name; for RUN: the delimiter
	Data []byte
	Mode uint32 // 0644 unless stated
}

// RunStep is RUN after expansion.
type RunStep struct {
	Args     []string // argv; shell form already wrapped with the SHELL (default /bin/sh -c)
	Cwd      string   // WORKDIR, "/" if unset
	Network  string   // "", "default", "host" or "none"
	Security string   // "", "sandbox" or "insecure"
	Mounts   []RunMount
	// Files are heredoc scripts the command needs at Path inside the
	// container (e.g. a shebang script); mounted read-only, never committed.
	Files []RunFile
	// Stdin, when set, is fed to the command (a heredoc body run by the shell).
	Stdin []byte
	// ProxyEnv holds HTTP_PROXY-style variables from the predefined build
	// args. The command sees them, but like BuildKit they stay out of cache
	// keys and history.
	ProxyEnv []string
}

// RunFile is a file provided to a RUN at Path.
type RunFile struct {
	Path string
	Data []byte
	Mode uint32
}

// RunMount is one RUN --mount after expansion.
type RunMount struct {
	Type      string // bind, cache, tmpfs, secret, ssh
	Target    string
	Source    string
	FromStage *Stage // from= naming a stage
	FromImage string // from= naming an image
	ReadOnly  bool
	ID        string
	Sharing   string // shared, private, locked
	UID, GID  *int
	Mode      *uint32
	Required  bool
	Env       string // secret env=
	Size      int64  // tmpfs size
}

// CopyStep is COPY or ADD after expansion.
type CopyStep struct {
	Add        bool
	Sources    []string     // as written after expansion (paths/globs, URLs for ADD)
	Inline     []InlineFile // COPY <<EOF heredocs
	Dest       string       // as written after expansion
	Workdir    string       // for a relative Dest
	FromStage  *Stage       // --from naming a stage (or index)
	FromImage  string       // --from naming an image
	Chown      string
	Chmod      string
	Link       bool
	Excludes   []string
	Parents    bool
	KeepGitDir bool
	Checksum   string
	Unpack     *bool // ADD --unpack; nil = default (unpack local archives)
}
