package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/strata-build/strata/progress"
)

// renderer prints progress events; it is the only place build output is
// formatted.
type renderer interface {
	progress.Sink
	Info(msg string)
	Close()
}

func newRenderer(mode string, w io.Writer, quiet bool) (renderer, error) {
	if quiet {
		return &plain{w: io.Discard}, nil
	}
	switch mode {
	case "auto":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return &plain{w: w, tty: true}, nil
		}
		return &plain{w: w}, nil
	case "tty":
		return &plain{w: w, tty: true}, nil
	case "plain":
		return &plain{w: w}, nil
	case "json":
		return &jsonRenderer{enc: json.NewEncoder(w)}, nil
	}
	return nil, fmt.Errorf("unknown --progress %q (auto, tty, plain, json)", mode)
}

// plain prints BuildKit's plain style: "#N [stage step/steps] INSTRUCTION",
// output lines prefixed by "#N", then "#N DONE 0.3s" or "#N CACHED". In tty
// mode step output is left out unless the step fails.
type plain struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	start time.Time
	held  map[int][]string // tty: output kept until the step ends
}

func (p *plain) Event(e progress.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.start.IsZero() {
		p.start = e.Time
	}
	switch e.Kind {
	case progress.Start:
		fmt.Fprintf(p.w, "#%d [%s %d/%d] %s (%s:%d)\n", e.ID, e.Stage, e.Step, e.Steps, e.Text, e.File, e.Line)
	case progress.Log:
		line := fmt.Sprintf("#%d %.3f %s", e.ID, e.Time.Sub(p.start).Seconds(), e.Text)
		if p.tty {
			if p.held == nil {
				p.held = map[int][]string{}
			}
			p.held[e.ID] = append(p.held[e.ID], line)
			return
		}
		fmt.Fprintln(p.w, line)
	case progress.Done:
		if e.Err != nil {
			for _, l := range p.held[e.ID] {
				fmt.Fprintln(p.w, l)
			}
			fmt.Fprintf(p.w, "#%d ERROR: %v\n", e.ID, e.Err)
		} else if e.Cached {
			fmt.Fprintf(p.w, "#%d CACHED\n", e.ID)
		} else {
			fmt.Fprintf(p.w, "#%d DONE %.1fs\n", e.ID, e.Duration.Seconds())
		}
		delete(p.held, e.ID)
	case progress.Info:
		fmt.Fprintln(p.w, e.Text)
	}
}

func (p *plain) Info(msg string) {
	p.Event(progress.Event{Kind: progress.Info, Time: time.Now(), Text: msg})
}

func (p *plain) Close() {}

// jsonRenderer prints one JSON object per event.
type jsonRenderer struct {
	mu  sync.Mutex
	enc *json.Encoder
}

type jsonEvent struct {
	Type     string  `json:"type"`
	Time     string  `json:"time"`
	ID       int     `json:"id,omitempty"`
	Stage    string  `json:"stage,omitempty"`
	Step     int     `json:"step,omitempty"`
	Steps    int     `json:"steps,omitempty"`
	Text     string  `json:"text,omitempty"`
	File     string  `json:"file,omitempty"`
	Line     int     `json:"line,omitempty"`
	Cached   bool    `json:"cached,omitempty"`
	Error    string  `json:"error,omitempty"`
	Duration float64 `json:"duration,omitempty"`
}

func (j *jsonRenderer) Event(e progress.Event) {
	kinds := map[progress.Kind]string{progress.Start: "start", progress.Log: "log", progress.Done: "done", progress.Info: "info"}
	je := jsonEvent{Type: kinds[e.Kind], Time: e.Time.Format(time.RFC3339Nano), ID: e.ID, Stage: e.Stage, Step: e.Step,
		Steps: e.Steps, Text: e.Text, File: e.File, Line: e.Line, Cached: e.Cached, Duration: e.Duration.Seconds()}
	if e.Err != nil {
		je.Error = e.Err.Error()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.enc.Encode(je)
}

func (j *jsonRenderer) Info(msg string) {
	j.Event(progress.Event{Kind: progress.Info, Time: time.Now(), Text: msg})
}

func (j *jsonRenderer) Close() {}
