package netns

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// entry is one container's attachment as recorded in the state file. It is
// written before anything is made on the host, so that a strata killed
// half way leaves a record the next Setup or Cleanup can undo.
type entry struct {
	IP    netip.Addr    `json:"ip"`
	Veth  string        `json:"veth,omitempty"`
	PID   int           `json:"pid,omitempty"`
	Start uint64        `json:"start,omitempty"` // the PID's start time, to tell PID reuse
	Ports []PortMapping `json:"ports,omitempty"`
}

// state is the content of BRIDGE.json.
type state struct {
	Subnet netip.Prefix `json:"subnet"`
	// Last is the address handed out last; allocation goes on after it
	// (wrapping), so a released address is reused only once the others
	// were, as Docker does, which keeps stale ARP and conntrack entries
	// for it from hitting a new container at once.
	Last       netip.Addr        `json:"last,omitzero"`
	Containers map[string]*entry `json:"containers"`
}

// lockedState is the state file, loaded under its exclusive flock.
type lockedState struct {
	cfg  Config
	lock *os.File
	path string
	st   state
	// reset says the file recorded another subnet (with no container
	// left); the bridge and chains must be rebuilt for the new one.
	reset bool
}

// lockState takes the bridge's lock (waiting, but giving up when ctx
// ends) and loads its state.
func lockState(ctx context.Context, cfg Config) (*lockedState, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("netns: making state dir: %w", err)
	}
	lockPath := filepath.Join(cfg.StateDir, cfg.Bridge+".lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("netns: opening lock: %w", err)
	}
	// Polling keeps the wait cancellable; holders keep the lock for a few
	// commands' time only.
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("netns: locking %s: %w", lockPath, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	l := &lockedState{cfg: cfg, lock: f, path: filepath.Join(cfg.StateDir, cfg.Bridge+".json")}
	if err := l.load(); err != nil {
		l.unlock()
		return nil, err
	}
	return l, nil
}

func (l *lockedState) load() error {
	l.st = state{Subnet: l.cfg.Subnet, Containers: map[string]*entry{}}
	b, err := os.ReadFile(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netns: reading state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("netns: decoding state %s: %w", l.path, err)
	}
	if st.Containers == nil {
		st.Containers = map[string]*entry{}
	}
	if st.Subnet.IsValid() && st.Subnet != l.cfg.Subnet {
		if len(st.Containers) > 0 {
			return fmt.Errorf("netns: bridge %s is in use with subnet %s, not %s", l.cfg.Bridge, st.Subnet, l.cfg.Subnet)
		}
		l.reset = true
		st = state{Subnet: l.cfg.Subnet, Containers: map[string]*entry{}}
	}
	st.Subnet = l.cfg.Subnet
	l.st = st
	return nil
}

// save writes the state atomically (temp file + rename), still under lock.
func (l *lockedState) save() error {
	b, err := json.MarshalIndent(&l.st, "", "  ")
	if err != nil {
		return fmt.Errorf("netns: encoding state: %w", err)
	}
	tmp, err := os.CreateTemp(l.cfg.StateDir, "."+l.cfg.Bridge+".json.*")
	if err != nil {
		return fmt.Errorf("netns: writing state: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), l.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("netns: writing state: %w", err)
	}
	return nil
}

func (l *lockedState) unlock() {
	// Closing the descriptor drops the flock. The lock file itself stays:
	// removing it would let a waiter lock a new file while another
	// process still holds the old one.
	l.lock.Close()
}

// allocate records a new entry for id with a free address. Addresses are
// the subnet's minus the network address, the gateway (first) and the
// broadcast address.
func (st *state) allocate(id string) (*entry, error) {
	if _, ok := st.Containers[id]; ok {
		return nil, fmt.Errorf("netns: container %s already has an address", id)
	}
	first := st.Subnet.Addr().Next().Next()
	last := broadcast(st.Subnet).Prev()
	used := make(map[netip.Addr]bool, len(st.Containers))
	for _, e := range st.Containers {
		used[e.IP] = true
	}
	start := first
	if st.Last.IsValid() && st.Subnet.Contains(st.Last) && st.Last.Compare(first) >= 0 && st.Last.Compare(last) < 0 {
		start = st.Last.Next()
	}
	a := start
	for {
		if !used[a] {
			e := &entry{IP: a}
			st.Containers[id] = e
			st.Last = a
			return e, nil
		}
		if a == last {
			a = first
		} else {
			a = a.Next()
		}
		if a == start {
			return nil, fmt.Errorf("netns: no free address left in %s", st.Subnet)
		}
	}
}

// broadcast returns the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	n := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], n)
	return netip.AddrFrom4(a)
}

// procStart returns the start time of process pid (clock ticks after
// boot, field 22 of /proc/PID/stat), which together with the PID names a
// process uniquely.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// comm (field 2) may hold spaces and parentheses; it ends at the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 3 is f[0]
}

// alive reports whether the process that owns e still runs. Entries with
// no owner count as alive.
func (e *entry) alive() bool {
	if e.PID <= 0 {
		return true
	}
	start, err := procStart(e.PID)
	return err == nil && start == e.Start
}
