package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// logEntry is one line of container.log, in Docker's json-file format.
type logEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// maxLogLine is where a line without a newline is cut into a partial
// entry (Docker's json-file does the same at 16 KiB).
const maxLogLine = 16 << 10

// logFile appends entries for both streams to one file.
type logFile struct {
	mu sync.Mutex
	f  *os.File
}

func openLog(name string) (*logFile, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	return &logFile{f: f}, nil
}

func (l *logFile) write(stream string, line []byte) {
	b, err := json.Marshal(logEntry{Log: string(line), Stream: stream, Time: time.Now().UTC()})
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// One write per entry: readers never see half of one (O_APPEND).
	_, _ = l.f.Write(append(b, '\n'))
}

func (l *logFile) Close() error { return l.f.Close() }

// logStream is an io.Writer that logs whole lines of one stream.
type logStream struct {
	l      *logFile
	stream string
	mu     sync.Mutex
	buf    []byte
}

func (w *logStream) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.l.write(w.stream, w.buf[:i+1])
		w.buf = w.buf[i+1:]
	}
	for len(w.buf) >= maxLogLine {
		w.l.write(w.stream, w.buf[:maxLogLine])
		w.buf = w.buf[maxLogLine:]
	}
	if len(w.buf) == 0 {
		w.buf = nil // let a big buffer go
	}
	return len(p), nil
}

// flush logs what is left without a newline.
func (w *logStream) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.l.write(w.stream, w.buf)
		w.buf = nil
	}
}

// LogOptions select what Logs prints.
type LogOptions struct {
	Follow     bool // keep printing new output until the container stops
	Tail       int  // only the last Tail lines; negative means all
	Timestamps bool // prefix each line with its RFC 3339 time
}

// Logs copies the container's output to stdout and stderr, each line to
// the stream it came from (with a terminal everything is stdout).
func (s *Store) Logs(ctx context.Context, ref string, o LogOptions, stdout, stderr io.Writer) error {
	c, err := s.Get(ref)
	if err != nil {
		return err
	}
	f, err := os.Open(logPath(c.Dir))
	if err != nil {
		return err
	}
	defer f.Close()
	print := func(e logEntry) error {
		w := stdout
		if e.Stream == "stderr" {
			w = stderr
		}
		line := e.Log
		if o.Timestamps {
			line = e.Time.Format(time.RFC3339Nano) + " " + line
		}
		_, err := io.WriteString(w, line)
		return err
	}
	// Whole lines only: a line still being written is read next round.
	var pending []byte
	readAll := func() ([]logEntry, error) {
		b, err := io.ReadAll(f)
		if err != nil {
			return nil, err
		}
		pending = append(pending, b...)
		var out []logEntry
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			var e logEntry
			if json.Unmarshal(pending[:i], &e) == nil {
				out = append(out, e)
			}
			pending = pending[i+1:]
		}
		return out, nil
	}
	entries, err := readAll()
	if err != nil {
		return err
	}
	if o.Tail >= 0 && len(entries) > o.Tail {
		entries = entries[len(entries)-o.Tail:]
	}
	for _, e := range entries {
		if err := print(e); err != nil {
			return err
		}
	}
	if !o.Follow {
		return nil
	}
	for {
		// The state first: whatever was written before it said stopped
		// is read below.
		cur, err := s.load(c.ID())
		running := err == nil && (cur.State.Status == StatusRunning ||
			cur.State.Status == StatusCreated && cur.State.MonitorPid != 0)
		entries, err := readAll()
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := print(e); err != nil {
				return err
			}
		}
		if !running {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail returns the last n lines of a container's stderr, for error
// messages.
func logTail(dir string, n int) []string {
	f, err := os.Open(logPath(dir))
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var e logEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Stream == "stderr" {
			lines = append(lines, string(bytes.TrimRight([]byte(e.Log), "\r\n")))
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// errNotRunning is wrapped by errors about containers that do not run.
var errNotRunning = errors.New("not running")

func notRunning(c *Container) error {
	return fmt.Errorf("container %s is %w", c.Config.Name, errNotRunning)
}
