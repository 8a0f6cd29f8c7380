// Package container runs OCI images as containers without a daemon: the
// life cycle behind `strata run`, ps, logs, exec, stop, kill, rm, inspect,
// stats and volume.
//
// # State on disk
//
//	ROOT/containers/ID/config.json   what to run; written once, before the directory appears
//	ROOT/containers/ID/state.json    status, PIDs and start times, exit code, address; replaced atomically
//	ROOT/containers/ID/lock          flock'd for every state change
//	ROOT/containers/ID/container.log stdout and stderr as JSON lines, like Docker's json-file driver
//	ROOT/containers/ID/monitor.log   what a detached monitor itself printed
//	ROOT/containers/ID/rw/{fs,work}  the writable layer (overlay upper and work dirs)
//	ROOT/containers/ID/hosts, resolv.conf  bind-mounted over the image's
//	ROOT/containers/.lock            flock'd while a container appears or goes (names are unique)
//	ROOT/volumes/NAME/_data          a named volume's content; NAME/volume.json its metadata
//	ROOT/volumes/.lock               flock'd while a volume is made or removed
//	ROOT/net/                        bridge address allocations (package netns)
//
// IDs are 64 hex digits; commands accept an ID, a unique prefix of one, or
// a name. A container directory is made in ROOT/containers/.tmp-* and
// renamed into place, and renamed to .trash-* before it is deleted, so a
// reader never sees half a container. The image's layers are unpacked into
// the snapshot store (ROOT/snapshots, keyed by diffID as the builder does)
// and config.json records their keys; the writable layer lives with the
// container, not in the snapshot store, so that nothing collecting
// snapshots can take it.
//
// # Processes
//
// There is no daemon. Each container has a monitor: the process that
// started it, which creates its cgroup (strata/ID, package cgroups),
// attaches its network (package netns) from the outside before the
// command starts, serves published ports on loopback, copies its output
// into container.log, waits for it, records the exit code, and tears the
// cgroup and network down again; with --rm it then removes the container.
// `strata run` in the foreground is the monitor itself, with the terminal
// attached; `strata run -d` spawns a monitor (package exec's Spawn: a new
// session, detached from the caller) and returns once the command has
// started. The container's processes die with their monitor (parent-death
// signal), so a container whose monitor is gone is reported as "dead";
// `rm` cleans up after it.
//
// The sandbox (package exec) gives the container new PID, mount, UTS, IPC,
// network and cgroup namespaces, an overlay of the image's layers plus the
// writable layer, Docker's default capabilities, no_new_privs, masked
// /proc paths, a fresh read-only /sys and read-only cgroup mounts. Without
// --init the command is PID 1 itself (signals without a handler are then
// ignored, as in Docker, which is why stop falls back to SIGKILL); with
// --init strata's own small init is PID 1 and reaps and forwards signals.
//
// Other commands find the container's PID 1 in state.json and check its
// start time before signalling it, so a reused PID is never hit. `exec`
// joins the container's namespaces and cgroup and chroots into
// /proc/PID/root.
//
// # Locking
//
// Every change of state.json happens under the container's flock, and
// readers see whole files. The monitor holds the lock while it starts the
// container and again while it records the exit; `rm -f` kills, then waits
// (without the lock) for the monitor to record the exit, then removes
// under both the container's and the global lock. A container whose
// monitor died is recognised by the monitor's PID and start time.
//
// # Volumes
//
// `-v NAME:/path` uses the named volume NAME, creating it on first use.
// When a volume is empty as a container starts and the image has content
// at /path, that content (with its owners and modes) is copied into the
// volume first, as Docker does. `-v /host:/path[:ro]` bind-mounts a host
// path (a missing one is created as a directory, like docker -v).
// Anonymous volumes (--mount type=volume without a source, and the image's
// VOLUMEs) are removed together with their container when it was run
// with --rm or removed with rm -v.
package container
