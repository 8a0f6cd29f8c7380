// Package exec runs build steps and containers in Linux namespaces.
//
// The parent never mounts anything: it re-executes /proc/self/exe with a
// hidden first argument and passes the work over a pipe. The child performs
// every mount inside its own private mount namespace, so when the child dies
// (normally, on error, or killed on cancel) the kernel tears all of it down
// and nothing can leak onto the host.
//
// Programs using the package must call [Child] first thing in main.
//
// # Roles
//
// [Run] makes a sandbox: new mount, PID, UTS and IPC namespaces (plus a
// network namespace unless the host's is shared) over an overlay root.
// By default (a Dockerfile RUN step) strata's own init is PID 1: it
// starts the command as PID 2, reaps, forwards signals and removes the
// mount points it made in the root afterwards. `strata run` sets the
// container fields of [Spec]: the command itself as PID 1
// (CommandIsInit), a cgroup namespace and read-only cgroup mounts, a fresh
// sysfs, a read-only root, no_new_privs, a session of its own and a
// pseudo-terminal from the sandbox's own devpts whose master is passed
// back over a socket. Created runs after the child exists and before it
// does anything, which is where the caller moves it into a cgroup and
// configures its network namespace from outside: the child waits for its
// configuration, which is only sent once Created returned.
//
// [Enter] starts a command in a running sandbox (`strata exec`): a helper
// joins the sandbox's IPC, UTS, network, PID and cgroup namespaces on one
// locked thread and forks the command from it, chrooted into
// /proc/PID/root. Go cannot join a mount namespace (setns needs a
// single-threaded process), hence the chroot.
//
// [RunHelper] runs a registered function in a child with its own mount
// namespace and waits for it; [Spawn] starts one detached, in a session
// of its own (the monitor of a `strata run -d` container).
package exec
