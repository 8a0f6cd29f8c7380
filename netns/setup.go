package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Attachment is a container's place on the bridge.
type Attachment struct {
	ContainerID string
	Bridge      string
	PID         int          // the process whose network namespace was configured
	IP          netip.Addr   // the container's address (eth0)
	Prefix      netip.Prefix // IP with the subnet's length, as on eth0
	Gateway     netip.Addr   // the bridge's address, the default route
	MAC         string       // eth0's hardware address
	HostVeth    string       // the host end of the veth pair, on the bridge
	MTU         int
	// Ports are the published ports with their host ports chosen; the
	// caller serves each with [Proxy] while the container runs.
	Ports []PortMapping
}

// Setup attaches the network namespace of process pid (made with
// CLONE_NEWNET, still empty; pid must stay valid, e.g. a child not yet
// waited for) to the bridge as container id: it makes the bridge and
// shared rules when missing, allocates an address, creates a veth pair
// with eth0 inside (address, default route via the gateway, lo up), and
// publishes ports with DNAT rules. Host ports asked for as 0 or as a range
// are chosen here. On error nothing of the container is left.
//
// Records of containers whose process is gone (a strata that died before
// its Teardown) are torn down first, so their addresses and ports return.
func Setup(ctx context.Context, cfg Config, containerID string, pid int, ports []PortMapping) (*Attachment, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkID(containerID); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ns, err := openNetns(pid)
	if err != nil {
		return nil, err
	}
	defer ns.close()
	start, err := procStart(pid)
	if err != nil {
		return nil, fmt.Errorf("netns: process %d: %w", pid, err)
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = hostMTU()
	}

	l, err := lockState(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer l.unlock()
	if l.reset {
		// The bridge was last used with another subnet and nobody uses it.
		if err := removeAll(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if err := prune(ctx, l); err != nil {
		return nil, err
	}
	if _, ok := l.st.Containers[containerID]; ok {
		return nil, fmt.Errorf("netns: container %s is already attached to %s", containerID, cfg.Bridge)
	}
	var taken []PortMapping
	for _, e := range l.st.Containers {
		taken = append(taken, e.Ports...)
	}
	resolved, err := resolvePorts(ctx, ports, taken)
	if err != nil {
		return nil, err
	}
	e, err := l.st.allocate(containerID)
	if err != nil {
		return nil, err
	}
	e.Veth, e.PID, e.Start, e.Ports = vethName(cfg.Bridge, containerID), pid, start, resolved
	// Recorded before anything is made, so a crash from here on leaves
	// something prune can undo.
	if err := l.save(); err != nil {
		return nil, err
	}
	att := &Attachment{
		ContainerID: containerID,
		Bridge:      cfg.Bridge,
		PID:         pid,
		IP:          e.IP,
		Prefix:      netip.PrefixFrom(e.IP, cfg.Subnet.Bits()),
		Gateway:     cfg.gateway(),
		MAC:         macFor(e.IP),
		HostVeth:    e.Veth,
		MTU:         mtu,
		Ports:       append([]PortMapping(nil), resolved...),
	}
	if err := attach(ctx, cfg, att, ns); err != nil {
		// Undo with a context of its own: ctx may be what failed.
		uerr := teardownLocked(context.WithoutCancel(ctx), l, containerID)
		return nil, errors.Join(err, uerr)
	}
	return att, nil
}

// attach makes the host side and the namespace side of an attachment.
func attach(ctx context.Context, cfg Config, att *Attachment, ns *nsHandle) error {
	if err := ensureBridge(ctx, cfg); err != nil {
		return err
	}
	if err := writeSysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	if err := ensureRules(ctx, cfg); err != nil {
		return err
	}
	mtu := strconv.Itoa(att.MTU)
	if _, err := ip(ctx, "link", "add", att.HostVeth, "mtu", mtu, "type", "veth",
		"peer", "name", "eth0", "mtu", mtu, "address", att.MAC, "netns", strconv.Itoa(att.PID)); err != nil {
		return fmt.Errorf("netns: making veth pair: %w", err)
	}
	if _, err := ip(ctx, "link", "set", att.HostVeth, "master", cfg.Bridge, "up"); err != nil {
		return fmt.Errorf("netns: attaching veth to bridge: %w", err)
	}
	batch := strings.Join([]string{
		"link set lo up",
		"addr add " + att.Prefix.String() + " dev eth0",
		"link set eth0 up",
		"route add default via " + att.Gateway.String() + " dev eth0",
	}, "\n") + "\n"
	err := ns.do(func() error {
		// As Docker does: non-root processes may bind low ports and ping.
		if err := writeSysctl("net.ipv4.ip_unprivileged_port_start", "0"); err != nil {
			return err
		}
		if err := writeSysctl("net.ipv4.ping_group_range", "0\t2147483647"); err != nil {
			return err
		}
		if _, err := run(ctx, strings.NewReader(batch), "ip", "-batch", "-"); err != nil {
			return fmt.Errorf("netns: configuring container interface: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return addPortRules(ctx, cfg, att.ContainerID, att.Ports, att.IP)
}

// Teardown undoes Setup for a container: its DNAT rules, the host end of
// its veth (already gone when the namespace died) and its address. It is
// idempotent and works from the ID alone, also after a crash; the bridge
// and the shared rules stay for other containers.
func Teardown(ctx context.Context, cfg Config, containerID string) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if err := checkID(containerID); err != nil {
		return err
	}
	l, err := lockState(ctx, cfg)
	if err != nil {
		return err
	}
	defer l.unlock()
	return teardownLocked(ctx, l, containerID)
}

// teardownLocked removes what a container has, recorded or not.
func teardownLocked(ctx context.Context, l *lockedState, id string) error {
	veth := vethName(l.cfg.Bridge, id)
	if e := l.st.Containers[id]; e != nil && e.Veth != "" {
		veth = e.Veth
	}
	err := errors.Join(
		removePortRules(ctx, l.cfg, id),
		deleteLink(ctx, veth),
	)
	if err != nil {
		return err // keep the record: a later Teardown or prune retries
	}
	if _, ok := l.st.Containers[id]; ok {
		delete(l.st.Containers, id)
		return l.save()
	}
	return nil
}

// prune tears down containers whose process is gone.
func prune(ctx context.Context, l *lockedState) error {
	var stale []string
	for id, e := range l.st.Containers {
		if !e.alive() {
			stale = append(stale, id)
		}
	}
	sort.Strings(stale)
	for _, id := range stale {
		if err := teardownLocked(ctx, l, id); err != nil {
			return fmt.Errorf("netns: removing leftovers of container %s: %w", id, err)
		}
	}
	return nil
}

// Cleanup removes the bridge, its rules and its state when no container
// uses it (after removing leftovers of dead ones); it is an error while
// one does. Meant for tests and for `strata system prune`-like commands;
// net.ipv4.ip_forward is left as it is.
func Cleanup(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	l, err := lockState(ctx, cfg)
	if err != nil {
		return err
	}
	defer l.unlock()
	if err := prune(ctx, l); err != nil {
		return err
	}
	if n := len(l.st.Containers); n > 0 {
		ids := make([]string, 0, n)
		for id := range l.st.Containers {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return fmt.Errorf("netns: bridge %s is in use by %d container(s): %s", cfg.Bridge, n, strings.Join(ids, ", "))
	}
	if err := removeAll(ctx, cfg); err != nil {
		return err
	}
	if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: removing state: %w", err)
	}
	return nil
}

// removeAll deletes the bridge's rules and the bridge.
func removeAll(ctx context.Context, cfg Config) error {
	if err := removeRules(ctx, cfg); err != nil {
		return err
	}
	return deleteLink(ctx, cfg.Bridge)
}
