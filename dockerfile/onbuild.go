package dockerfile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// addTriggers parses the ONBUILD triggers a stage inherits and puts them
// before the stage's own instructions, located at its FROM line.
func (p *planner) addTriggers(s *stageState, triggers []string) error {
	if len(triggers) == 0 {
		return nil
	}
	loc := p.loc(s.inst.Location)
	cmds := make([]command, 0, len(triggers)+len(s.cmds))
	for _, t := range triggers {
		c, err := parseTrigger(t, s.inst.Location)
		if err != nil {
			return p.errAt(loc, fmt.Errorf("ONBUILD %s: %w", t, err))
		}
		cmd, err := p.newCommand(c, loc)
		if err != nil {
			return toErrorAt(p.file, loc, err)
		}
		cmd.onbuild = true
		p.addDeps(s, cmd)
		cmds = append(cmds, cmd)
	}
	s.cmds = append(cmds, s.cmds...)
	return nil
}

// parseTrigger parses one trigger as a single instruction.
func parseTrigger(trigger string, at []parser.Range) (instructions.Command, error) {
	res, err := parser.Parse(strings.NewReader(trigger))
	if err != nil {
		return nil, err
	}
	if len(res.AST.Children) != 1 {
		return nil, errors.New("onbuild trigger should be a single expression")
	}
	node := res.AST.Children[0]
	if len(at) > 0 {
		node.StartLine, node.EndLine = at[0].Start.Line, at[len(at)-1].End.Line
	}
	v, err := instructions.ParseInstructionWithLinter(node, noLinter())
	if err != nil {
		return nil, err
	}
	c, ok := v.(instructions.Command)
	if !ok {
		return nil, fmt.Errorf("%s isn't allowed as an ONBUILD trigger", strings.ToUpper(node.Value))
	}
	return c, nil
}
