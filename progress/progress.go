// Package progress carries build progress as events from the builder to
// whoever renders them. Library packages emit events; only cmd/strata prints.
package progress

import "time"

// Kind is what an event reports.
type Kind int

const (
	// Start: a step began.
	Start Kind = iota
	// Log: a line of a step's output.
	Log
	// Done: a step ended (Cached, Err and Duration set).
	Done
	// Info: a build-level message (Text), not tied to a step.
	Info
)

// Event is one progress report.
type Event struct {
	Kind  Kind
	Time  time.Time
	Stage string // stage name, or its index as a string
	Step  int    // 1-based within the stage
	Steps int    // steps in the stage
	// ID identifies the step across events of one build ("#3").
	ID       int
	Text     string // the instruction, or the log line without its newline
	File     string
	Line     int
	Cached   bool
	Err      error
	Duration time.Duration
}

// Sink receives events. Implementations must be safe for concurrent use:
// parallel stages report at the same time.
type Sink interface {
	Event(e Event)
}

// Discard is a Sink that drops every event.
type Discard struct{}

// Event drops e.
func (Discard) Event(Event) {}
