package container

import (
	"time"

	"github.com/strata-build/strata/cgroups"
	"github.com/strata-build/strata/netns"
)

// Mount types of MountSpec.
const (
	MountBind   = "bind"
	MountVolume = "volume"
	MountTmpfs  = "tmpfs"
)

// MountSpec is one -v, --mount or --tmpfs.
type MountSpec struct {
	Type        string `json:"type"`             // MountBind, MountVolume or MountTmpfs
	Source      string `json:"source,omitempty"` // host path (bind) or volume name; "" for an anonymous volume
	Destination string `json:"destination"`      // absolute path in the container
	ReadOnly    bool   `json:"read_only,omitempty"`
	// Options are extra tmpfs options (size=64m, mode=1777, ...).
	Options []string `json:"options,omitempty"`
	// Anonymous marks a volume made for this container only (its name is
	// then set when the container is created).
	Anonymous bool `json:"anonymous,omitempty"`
}

// Config is everything `strata run` decided about a container. It is
// written once, when the container is created.
type Config struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`

	Image       string   `json:"image"`        // as the user named it
	ImageDigest string   `json:"image_digest"` // manifest digest
	Layers      []string `json:"layers"`       // snapshot keys (diffID hex), base layer first

	Args       []string `json:"args"` // entrypoint + command
	Env        []string `json:"env"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
	Hostname   string   `json:"hostname"`

	Tty        bool `json:"tty,omitempty"`
	OpenStdin  bool `json:"open_stdin,omitempty"`
	Init       bool `json:"init,omitempty"`
	ReadOnly   bool `json:"read_only,omitempty"`
	AutoRemove bool `json:"auto_remove,omitempty"`

	Network   netns.Mode          `json:"network"`
	Ports     []netns.PortMapping `json:"ports,omitempty"`
	Mounts    []MountSpec         `json:"mounts,omitempty"`
	Resources cgroups.Resources   `json:"resources"`

	StopSignal  string `json:"stop_signal,omitempty"`  // default SIGTERM
	StopTimeout int    `json:"stop_timeout,omitempty"` // seconds; 0 = DefaultStopTimeout
}

// DefaultStopTimeout is how long stop waits after the stop signal before
// it kills, in seconds (Docker's default).
const DefaultStopTimeout = 10

// Status is where a container is in its life.
type Status string

// Statuses.
const (
	StatusCreated  Status = "created"  // made, not started (or failed to start)
	StatusRunning  Status = "running"  // its monitor runs it
	StatusExited   Status = "exited"   // ended, exit code recorded
	StatusDead     Status = "dead"     // its monitor died: nobody recorded how it ended
	StatusRemoving Status = "removing" // being removed
)

// State is a container's current state (state.json).
type State struct {
	Status Status `json:"status"`
	// Pid is the host PID of the container's PID 1, PidStart its start
	// time in clock ticks after boot (from /proc/PID/stat), so a reused
	// PID is never mistaken for it.
	Pid      int    `json:"pid,omitempty"`
	PidStart uint64 `json:"pid_start,omitempty"`
	// MonitorPid is the process that runs the container and records its
	// end; MonitorStart as for PidStart.
	MonitorPid   int    `json:"monitor_pid,omitempty"`
	MonitorStart uint64 `json:"monitor_start,omitempty"`

	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	ExitCode   int       `json:"exit_code"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	Error      string    `json:"error,omitempty"`
	// Warnings say what could not be set up exactly as asked (no swap
	// accounting, no cgroup at all).
	Warnings []string `json:"warnings,omitempty"`

	Cgroup  string              `json:"cgroup,omitempty"` // cgroups name, "" when none
	IP      string              `json:"ip,omitempty"`
	Gateway string              `json:"gateway,omitempty"`
	MAC     string              `json:"mac,omitempty"`
	Ports   []netns.PortMapping `json:"ports,omitempty"` // as published, host ports chosen
}

// Container is a container's config and state as read at one moment.
type Container struct {
	Config Config `json:"config"`
	State  State  `json:"state"`
	// Dir is the container's state directory.
	Dir string `json:"dir"`
}

// ID is the container's full ID.
func (c *Container) ID() string { return c.Config.ID }

// ShortID is the 12-digit form ps shows.
func (c *Container) ShortID() string { return c.Config.ID[:12] }
