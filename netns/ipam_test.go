package netns

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// allocateOne allocates an address for id the way Setup does: under the
// bridge's lock, recorded in the state file.
func allocateOne(ctx context.Context, cfg Config, id string) (netip.Addr, error) {
	l, err := lockState(ctx, cfg)
	if err != nil {
		return netip.Addr{}, err
	}
	defer l.unlock()
	e, err := l.st.allocate(id)
	if err != nil {
		return netip.Addr{}, err
	}
	return e.IP, l.save()
}

// releaseOne drops id's record the way Teardown does once the network
// side is gone.
func releaseOne(ctx context.Context, cfg Config, id string) error {
	l, err := lockState(ctx, cfg)
	if err != nil {
		return err
	}
	defer l.unlock()
	delete(l.st.Containers, id)
	return l.save()
}

func ipamConfig(t *testing.T, subnet string) Config {
	t.Helper()
	cfg, err := Config{StateDir: t.TempDir(), Bridge: "stt9", Subnet: netip.MustParsePrefix(subnet)}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func readState(t *testing.T, cfg Config) state {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cfg.StateDir, cfg.Bridge+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestAllocateSequenceAndReuse(t *testing.T) {
	ctx := context.Background()
	// A /29: network .0, gateway .1, containers .2-.6, broadcast .7.
	cfg := ipamConfig(t, "10.213.7.0/29")
	var got []string
	for i := 0; i < 5; i++ {
		a, err := allocateOne(ctx, cfg, "c"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.String())
	}
	want := "10.213.7.2 10.213.7.3 10.213.7.4 10.213.7.5 10.213.7.6"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	if _, err := allocateOne(ctx, cfg, "full"); err == nil || !strings.Contains(err.Error(), "no free address left in 10.213.7.0/29") {
		t.Fatalf("exhausted subnet: got %v", err)
	}
	if _, err := allocateOne(ctx, cfg, "c1"); err == nil || !strings.Contains(err.Error(), "already has an address") {
		t.Fatalf("second allocation for one ID: got %v", err)
	}

	// Released addresses come back, oldest-released first after wrapping.
	if err := releaseOne(ctx, cfg, "c3"); err != nil {
		t.Fatal(err)
	}
	if err := releaseOne(ctx, cfg, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := releaseOne(ctx, cfg, "c1"); err != nil { // idempotent
		t.Fatal(err)
	}
	a, err := allocateOne(ctx, cfg, "n1")
	if err != nil || a.String() != "10.213.7.3" {
		t.Fatalf("after release: got %v, %v; want 10.213.7.3", a, err)
	}
	a, err = allocateOne(ctx, cfg, "n2")
	if err != nil || a.String() != "10.213.7.5" {
		t.Fatalf("after release: got %v, %v; want 10.213.7.5", a, err)
	}

	st := readState(t, cfg)
	if st.Subnet.String() != "10.213.7.0/29" || len(st.Containers) != 5 || st.Containers["n2"].IP.String() != "10.213.7.5" {
		t.Errorf("state file: %+v", st)
	}
}

func TestAllocateRoundRobin(t *testing.T) {
	ctx := context.Background()
	cfg := ipamConfig(t, "10.213.7.0/24")
	for _, id := range []string{"a", "b", "c"} {
		if _, err := allocateOne(ctx, cfg, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := releaseOne(ctx, cfg, "a"); err != nil {
		t.Fatal(err)
	}
	// .2 was freed, but .5 comes next: a just-released address is not
	// handed out while others are free.
	a, err := allocateOne(ctx, cfg, "d")
	if err != nil || a.String() != "10.213.7.5" {
		t.Fatalf("got %v, %v; want 10.213.7.5", a, err)
	}
}

func TestSubnetChange(t *testing.T) {
	ctx := context.Background()
	cfg := ipamConfig(t, "10.213.7.0/24")
	if _, err := allocateOne(ctx, cfg, "a"); err != nil {
		t.Fatal(err)
	}
	other := cfg
	other.Subnet = netip.MustParsePrefix("10.213.8.0/24")
	if _, err := lockState(ctx, other); err == nil || !strings.Contains(err.Error(), "in use with subnet 10.213.7.0/24") {
		t.Fatalf("subnet change while in use: got %v", err)
	}
	if err := releaseOne(ctx, cfg, "a"); err != nil {
		t.Fatal(err)
	}
	l, err := lockState(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer l.unlock()
	if !l.reset || l.st.Subnet != other.Subnet {
		t.Errorf("unused bridge with another subnet: reset=%v subnet=%v", l.reset, l.st.Subnet)
	}
	e, err := l.st.allocate("b")
	if err != nil || e.IP.String() != "10.213.8.2" {
		t.Errorf("allocation after the change: %v, %v", e, err)
	}
}

func TestCorruptState(t *testing.T) {
	cfg := ipamConfig(t, "10.213.7.0/24")
	if err := os.WriteFile(filepath.Join(cfg.StateDir, cfg.Bridge+".json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := allocateOne(context.Background(), cfg, "a"); err == nil || !strings.Contains(err.Error(), "decoding state") {
		t.Fatalf("got %v", err)
	}
}

func TestLockHonoursContext(t *testing.T) {
	cfg := ipamConfig(t, "10.213.7.0/24")
	l, err := lockState(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lockState(ctx, cfg); err != context.Canceled {
		t.Fatalf("lock held elsewhere, ctx cancelled: got %v", err)
	}
}

func TestBroadcast(t *testing.T) {
	for p, want := range map[string]string{
		"10.89.0.0/16":   "10.89.255.255",
		"10.213.7.0/29":  "10.213.7.7",
		"192.168.4.0/22": "192.168.7.255",
	} {
		if got := broadcast(netip.MustParsePrefix(p)).String(); got != want {
			t.Errorf("broadcast(%s) = %s, want %s", p, got, want)
		}
	}
}

// ipamHelperEnv makes the test binary an allocating helper process:
// "STATEDIR PREFIX N".
const ipamHelperEnv = "STRATA_NETNS_IPAM_HELPER"

func TestIPAMHelperProcess(t *testing.T) {
	spec := os.Getenv(ipamHelperEnv)
	if spec == "" {
		t.Skip("helper process for TestConcurrentAllocation")
	}
	f := strings.Fields(spec)
	n, _ := strconv.Atoi(f[2])
	cfg, err := Config{StateDir: f[0], Bridge: "stt9", Subnet: netip.MustParsePrefix("10.213.7.0/24")}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		a, err := allocateOne(context.Background(), cfg, fmt.Sprintf("%s-%d", f[1], i))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("ALLOC", a)
	}
}

func TestConcurrentAllocation(t *testing.T) {
	ctx := context.Background()
	cfg := ipamConfig(t, "10.213.7.0/24")
	const procs, goroutines, each = 3, 4, 15

	// Other processes, allocating at the same time as the goroutines.
	var cmds []*osexec.Cmd
	var outs []*bufio.Scanner
	for p := 0; p < procs; p++ {
		cmd := osexec.Command(os.Args[0], "-test.run=^TestIPAMHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s proc%d %d", ipamHelperEnv, cfg.StateDir, p, each))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		outs = append(outs, bufio.NewScanner(out))
	}

	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				if _, err := allocateOne(ctx, cfg, id); err != nil {
					errs <- err
				}
				// Release some again so reuse races with allocation too.
				if i%3 == 0 {
					if err := releaseOne(ctx, cfg, id); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	procAllocs := 0
	for i, cmd := range cmds {
		for outs[i].Scan() {
			if strings.HasPrefix(outs[i].Text(), "ALLOC ") {
				procAllocs++
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper process %d: %v", i, err)
		}
	}
	if procAllocs != procs*each {
		t.Errorf("helper processes reported %d allocations, want %d", procAllocs, procs*each)
	}

	st := readState(t, cfg)
	wantN := procs*each + goroutines*(each-each/3)
	if len(st.Containers) != wantN {
		t.Errorf("state has %d containers, want %d", len(st.Containers), wantN)
	}
	seen := map[netip.Addr]string{}
	for id, e := range st.Containers {
		if other, dup := seen[e.IP]; dup {
			t.Errorf("%s and %s both have %s", id, other, e.IP)
		}
		seen[e.IP] = id
		if !cfg.Subnet.Contains(e.IP) || e.IP == cfg.gateway() || e.IP == cfg.Subnet.Addr() {
			t.Errorf("%s got unusable address %s", id, e.IP)
		}
	}
}
