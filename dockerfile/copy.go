package dockerfile

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	mode "github.com/tonistiigi/dchapes-mode"
)

// copyArgs is what COPY and ADD share after expansion.
type copyArgs struct {
	add        bool
	sd         instructions.SourcesAndDest
	from       string
	chown      string
	chmod      string
	link       bool
	excludes   []string
	parents    bool
	keepGitDir *bool
	checksum   string
	unpack     *bool
}

// dispatchCopy plans a COPY or ADD.
func (p *planner) dispatchCopy(s *stageState, c command, a copyArgs) error {
	if err := checkChmod(a.chmod); err != nil {
		return err
	}
	if a.chown != "" && a.link && chownByName(a.chown) {
		return fmt.Errorf("--chown=%s: user and group names can't be resolved when used with --link, use numeric uid[:gid] instead", a.chown)
	}
	for _, src := range a.sd.SourcePaths {
		remote := isURL(src) || isGit(src)
		if remote && !a.add {
			if isGit(src) {
				return errors.New("source can't be a git ref for COPY")
			}
			return errors.New("source can't be a URL for COPY")
		}
	}
	if a.checksum != "" {
		if len(a.sd.SourcePaths) != 1 {
			return errors.New("checksum can't be specified for multiple sources")
		}
		if src := a.sd.SourcePaths[0]; !isURL(src) && !isGit(src) {
			return errors.New("checksum requires HTTP(S) or Git sources")
		}
	}
	cs := &CopyStep{
		Add:      a.add,
		Sources:  append([]string(nil), a.sd.SourcePaths...),
		Dest:     a.sd.DestPath,
		Workdir:  s.cfg.Config.WorkingDir,
		Chown:    a.chown,
		Chmod:    a.chmod,
		Link:     a.link,
		Excludes: append([]string(nil), a.excludes...),
		Parents:  a.parents,
		Checksum: a.checksum,
		Unpack:   a.unpack,
	}
	if cs.Workdir == "" {
		cs.Workdir = "/"
	}
	if a.keepGitDir != nil {
		cs.KeepGitDir = *a.keepGitDir
	}
	for _, sc := range a.sd.SourceContents {
		cs.Inline = append(cs.Inline, InlineFile{Name: sc.Path, Data: []byte(sc.Data), Mode: 0o644})
	}
	if len(c.sources) > 0 {
		src := c.sources[0]
		if src.stage != nil {
			if !src.stage.dispatched {
				return fmt.Errorf("cannot copy from stage %q, it needs to be defined before current stage %q", a.from, p.stageLabel(s))
			}
			cs.FromStage = src.stage.out
		} else {
			cs.FromImage = src.image
		}
	}

	var text strings.Builder
	if a.add {
		text.WriteString("ADD")
	} else {
		text.WriteString("COPY")
	}
	if a.parents {
		text.WriteString(" --parents")
	}
	if a.chown != "" {
		text.WriteString(" --chown=" + a.chown)
	}
	if a.chmod != "" {
		text.WriteString(" --chmod=" + a.chmod)
	}
	for _, src := range cs.Sources {
		text.WriteString(" " + src)
	}
	for _, f := range cs.Inline {
		text.WriteString(" <<" + f.Name)
	}
	text.WriteString(" " + cs.Dest + " # buildkit")
	st := p.addStep(s, c, Copy, text.String())
	st.Copy = cs
	return nil
}

// stageLabel names a stage in messages; a lone stage has no name.
func (p *planner) stageLabel(s *stageState) string {
	if len(p.stages) == 1 {
		return ""
	}
	return s.label
}

// checkChmod accepts an octal mode up to 07777 or a symbolic one (u+x).
func checkChmod(chmod string) error {
	if chmod == "" {
		return nil
	}
	n, err := strconv.ParseUint(chmod, 8, 32)
	if err == nil && n <= 0o7777 {
		return nil
	}
	if err == nil || chmod[0] >= '0' && chmod[0] <= '9' {
		return fmt.Errorf("invalid chmod parameter: '%v'. it should be octal string and between 0 and 07777", chmod)
	}
	// Symbolic, as chmod(1): applied to each source's mode when copying.
	if _, err := mode.Parse(chmod); err != nil {
		return fmt.Errorf("invalid chmod parameter: '%v': %v", chmod, err)
	}
	return nil
}

// chownByName reports whether user or group in "user[:group]" is a name.
func chownByName(chown string) bool {
	u, g, _ := strings.Cut(chown, ":")
	for _, part := range []string{u, g} {
		if part == "" {
			continue
		}
		if _, err := strconv.ParseUint(part, 10, 32); err != nil {
			return true
		}
	}
	return false
}

func isURL(src string) bool {
	return (strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")) && !isGit(src)
}

// isGit recognises the git source forms BuildKit's ADD accepts.
func isGit(src string) bool {
	switch {
	case strings.HasPrefix(src, "git://"), strings.HasPrefix(src, "git@"), strings.HasPrefix(src, "ssh://"):
		return true
	case strings.HasPrefix(src, "http://"), strings.HasPrefix(src, "https://"):
		u, _, _ := strings.Cut(src, "#")
		return strings.HasSuffix(u, ".git")
	}
	return false
}
