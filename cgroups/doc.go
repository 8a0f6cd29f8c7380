// Package cgroups enforces `strata run` resource limits (--memory,
// --memory-swap, --cpus, --pids-limit) with Linux control groups, on cgroup
// v1 (legacy, or hybrid with a cgroup2 mount beside the v1 hierarchies) and
// cgroup v2 (unified) machines alike.
//
// Each controller is used on whichever hierarchy the kernel bound it to: on
// a hybrid machine whose cgroup2 mount carries no controllers the limits go
// to the v1 hierarchies, and a controller found only on the cgroup2 mount is
// enabled there. A hybrid group also gets a cgroup2 directory, which brings
// cgroup.kill. Groups are plain directories named after the container
// ("strata/<id>"), so another strata process (`strata stats`, `strata stop`)
// reopens one with Load.
//
// Docker's semantics are kept where they matter to users: a memory limit
// is at least 6 MiB; --cpus N is a CFS quota of N*100000µs per 100000µs;
// a process the OOM killer ends exits 137 (128+SIGKILL). One deliberate
// difference: with --memory and no --memory-swap, Docker allows as much
// swap again as memory, while strata allows no swap.
//
// The pids limit counts tasks, threads included, of every process in the
// group, and a zombie keeps counting until its parent reaps it.
package cgroups
