// Package exec runs build steps in Linux namespaces.
//
// The parent never mounts anything: it re-executes /proc/self/exe with a
// hidden first argument and passes the work over a pipe. The child performs
// every mount inside its own private mount namespace, so when the child dies
// (normally, on error, or killed on cancel) the kernel tears all of it down
// and nothing can leak onto the host.
//
// Programs using the package must call [Child] first thing in main.
package exec
