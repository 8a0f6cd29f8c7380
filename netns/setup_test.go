package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func requireNetRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: bridges, veths, iptables and network namespaces")
	}
	for _, tool := range []string{"ip", "iptables", "sleep"} {
		if _, err := osexec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

// testNet returns a config for a test bridge, first removing what a
// crashed earlier run may have left, and removes everything at the end,
// also when the test fails (Cleanup runs after the containers' teardowns,
// which are registered later).
func testNet(t *testing.T, bridge, subnet string) Config {
	t.Helper()
	ctx := context.Background()
	cfg := Config{StateDir: filepath.Join(t.TempDir(), "net"), Bridge: bridge, Subnet: netip.MustParsePrefix(subnet)}
	if err := Cleanup(ctx, Config{StateDir: t.TempDir(), Bridge: bridge, Subnet: cfg.Subnet}); err != nil {
		t.Fatalf("removing leftovers: %v", err)
	}
	t.Cleanup(func() {
		if err := Cleanup(ctx, cfg); err != nil {
			t.Errorf("Cleanup: %v", err)
			// Make sure nothing stays on the host anyway.
			l, lerr := lockState(ctx, cfg)
			if lerr == nil {
				for id := range l.st.Containers {
					teardownLocked(ctx, l, id)
				}
				l.unlock()
			}
			if err := Cleanup(ctx, cfg); err != nil {
				t.Errorf("Cleanup again: %v", err)
			}
		}
		if linkExists(bridge) {
			t.Errorf("bridge %s still there after Cleanup", bridge)
		}
	})
	return cfg
}

// startNetns starts a process in a new, empty network namespace and
// returns its PID; it is killed at the end of the test.
func startNetns(t *testing.T) int {
	t.Helper()
	cmd := osexec.Command("sleep", "3600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// attachTest runs Setup and registers its Teardown.
func attachTest(t *testing.T, cfg Config, id string, pid int, ports ...string) *Attachment {
	t.Helper()
	var pm []PortMapping
	for _, p := range ports {
		m, err := ParsePort(p)
		if err != nil {
			t.Fatal(err)
		}
		pm = append(pm, m...)
	}
	att, err := Setup(context.Background(), cfg, id, pid, pm)
	if err != nil {
		t.Fatalf("Setup %s: %v", id, err)
	}
	t.Cleanup(func() {
		if err := Teardown(context.Background(), cfg, id); err != nil {
			t.Errorf("Teardown %s: %v", id, err)
		}
	})
	return att
}

// inNetns runs fn inside the network namespace of pid.
func inNetns(t *testing.T, pid int, fn func() error) error {
	t.Helper()
	h, err := openNetns(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	return h.do(fn)
}

// serveIn starts servers inside pid's namespace on port: TCP answering
// "hi <name> from <client ip>", UDP answering "<name> udp from <client ip>".
// The client address shows which path (DNAT keeps the source, the proxy
// and masquerading replace it) a packet took.
func serveIn(t *testing.T, pid int, name string, port int) {
	t.Helper()
	var l net.Listener
	var pc net.PacketConn
	err := inNetns(t, pid, func() error {
		var err error
		if l, err = net.Listen("tcp4", ":"+strconv.Itoa(port)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); pc.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			from := c.RemoteAddr().(*net.TCPAddr).IP
			fmt.Fprintf(c, "hi %s from %s", name, from)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			fmt.Fprintf(writerTo{pc, from}, "%s udp from %s", name, from.(*net.UDPAddr).IP)
		}
	}()
}

type writerTo struct {
	pc   net.PacketConn
	addr net.Addr
}

func (w writerTo) Write(b []byte) (int, error) { return w.pc.WriteTo(b, w.addr) }

// readTCP connects and returns everything the server sends.
func readTCP(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// askUDP sends one datagram and returns the answer.
func askUDP(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("?")); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// hostAddr returns a non-loopback IPv4 address of the host outside the
// test subnets, or an invalid one.
func hostAddr(t *testing.T) netip.Addr {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || strings.HasPrefix(ifc.Name, "st") {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
				return p.Addr()
			}
		}
	}
	return netip.Addr{}
}

// nsIP runs `ip ARGS` inside pid's namespace.
func nsIP(t *testing.T, pid int, args ...string) string {
	t.Helper()
	var out string
	err := inNetns(t, pid, func() error {
		var err error
		out, err = run(context.Background(), nil, "ip", args...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func natRules(t *testing.T, chain string) string {
	t.Helper()
	out, err := iptables(context.Background(), "nat", "-S", chain)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startProxies serves every published port of att like the caller's
// monitor would, until the test ends.
func startProxies(t *testing.T, att *Attachment) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, m := range att.Ports {
		p, err := ListenProxy(ctx, m, att.IP)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Serve(ctx); err != nil {
				t.Errorf("proxy %s: %v", m, err)
			}
		}()
	}
}

func TestBridgeNetwork(t *testing.T) {
	requireNetRoot(t)
	ctx := context.Background()
	cfg := testNet(t, "stt0", "10.213.0.0/24")
	gw := "10.213.0.1"

	pid1 := startNetns(t)
	att1 := attachTest(t, cfg, "c1", pid1, "18281:80", "18282:5353/udp", "127.0.0.1::80")

	// Addressing, inside and out.
	if att1.IP.String() != "10.213.0.2" || att1.Gateway.String() != gw || att1.Prefix.String() != "10.213.0.2/24" {
		t.Fatalf("attachment: %+v", att1)
	}
	if out := nsIP(t, pid1, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "inet 10.213.0.2/24") {
		t.Errorf("eth0 in the container:\n%s", out)
	}
	link := nsIP(t, pid1, "-o", "link", "show", "dev", "eth0")
	if !strings.Contains(link, "link/ether "+att1.MAC) || !strings.Contains(link, "mtu "+strconv.Itoa(hostMTU())) || !strings.Contains(link, "state UP") {
		t.Errorf("eth0 link:\n%s", link)
	}
	if out := nsIP(t, pid1, "-o", "link", "show", "dev", "lo"); !strings.Contains(out, "UP") {
		t.Errorf("lo:\n%s", out)
	}
	if out := nsIP(t, pid1, "route", "show", "default"); !strings.Contains(out, "default via "+gw+" dev eth0") {
		t.Errorf("routes:\n%s", out)
	}
	if master, err := os.Readlink("/sys/class/net/" + att1.HostVeth + "/master"); err != nil || filepath.Base(master) != "stt0" {
		t.Errorf("host veth %s master: %s, %v", att1.HostVeth, master, err)
	}
	if out, _ := ip(ctx, "-4", "-o", "addr", "show", "dev", "stt0"); !strings.Contains(out, "inet "+gw+"/24") {
		t.Errorf("bridge address:\n%s", out)
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Errorf("ip_forward: %q, %v", b, err)
	}
	var unpriv []byte
	inNetns(t, pid1, func() error {
		unpriv, _ = os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
		return nil
	})
	if strings.TrimSpace(string(unpriv)) != "0" {
		t.Errorf("container ip_unprivileged_port_start = %q", unpriv)
	}

	// The container reaches the gateway: ping when busybox is there, and TCP.
	if _, err := osexec.LookPath("busybox"); err == nil {
		err := inNetns(t, pid1, func() error {
			_, err := run(ctx, nil, "busybox", "ping", "-c", "1", "-W", "5", gw)
			return err
		})
		if err != nil {
			t.Errorf("ping gateway: %v", err)
		}
	}
	gl, err := net.Listen("tcp4", gw+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	go func() {
		if c, err := gl.Accept(); err == nil {
			fmt.Fprintf(c, "gateway sees %s", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
	var got string
	err = inNetns(t, pid1, func() error {
		var err error
		got, err = readTCP(gl.Addr().String())
		return err
	})
	if err != nil || got != "gateway sees 10.213.0.2" {
		t.Errorf("container to gateway: %q, %v", got, err)
	}

	// Published ports. Servers in the container on 80 (tcp) and 5353 (udp).
	serveIn(t, pid1, "c1", 80)
	serveIn(t, pid1, "c1", 5353)
	if len(att1.Ports) != 3 || att1.Ports[2].HostPort == 0 || att1.Ports[2].HostIP != loopback() {
		t.Fatalf("ports: %v", att1.Ports)
	}
	randomPort := strconv.Itoa(int(att1.Ports[2].HostPort))

	// Before any proxy runs, DNAT alone serves the host's own non-loopback
	// address, keeping the client's source address.
	host := hostAddr(t)
	if host.IsValid() {
		got, err := readTCP(net.JoinHostPort(host.String(), "18281"))
		if want := "hi c1 from " + host.String(); err != nil || got != want {
			t.Errorf("tcp via %s (DNAT): %q, %v; want %q", host, got, err, want)
		}
		got, err = askUDP(net.JoinHostPort(host.String(), "18282"))
		if want := "c1 udp from " + host.String(); err != nil || got != want {
			t.Errorf("udp via %s (DNAT): %q, %v; want %q", host, got, err, want)
		}
	} else {
		t.Log("no non-loopback host address: DNAT path not checked")
	}
	// Loopback is left to the proxy: nothing answers yet.
	if got, err := readTCP("127.0.0.1:18281"); err == nil {
		t.Errorf("127.0.0.1 answered without the proxy: %q", got)
	}

	// With the proxies (as the monitor runs them) 127.0.0.1 works; the
	// container sees the gateway as the client.
	startProxies(t, att1)
	for _, addr := range []string{"127.0.0.1:18281", "127.0.0.1:" + randomPort} {
		got, err := readTCP(addr)
		if want := "hi c1 from " + gw; err != nil || got != want {
			t.Errorf("tcp via %s (proxy): %q, %v; want %q", addr, got, err, want)
		}
	}
	if got, err := askUDP("127.0.0.1:18282"); err != nil || got != "c1 udp from "+gw {
		t.Errorf("udp via 127.0.0.1 (proxy): %q, %v", got, err)
	}
	if host.IsValid() {
		// External-address traffic still goes through DNAT, not the proxy.
		if got, err := readTCP(net.JoinHostPort(host.String(), "18281")); err != nil || got != "hi c1 from "+host.String() {
			t.Errorf("tcp via %s with proxies running: %q, %v", host, got, err)
		}
	}

	// A second container gets another address, reaches the first over the
	// bridge, and reaches c1's published port through the host address.
	pid2 := startNetns(t)
	att2 := attachTest(t, cfg, "c2", pid2)
	if att2.IP == att1.IP || !cfg.Subnet.Contains(att2.IP) || att2.HostVeth == att1.HostVeth {
		t.Fatalf("second attachment: %+v (first %+v)", att2, att1)
	}
	err = inNetns(t, pid2, func() error {
		got, err := readTCP(net.JoinHostPort(att1.IP.String(), "80"))
		if want := "hi c1 from " + att2.IP.String(); got != want {
			return fmt.Errorf("got %q, %v; want %q", got, err, want)
		}
		if host.IsValid() {
			got, err = readTCP(net.JoinHostPort(host.String(), "18281"))
			if got != "hi c1 from "+gw {
				return fmt.Errorf("via the host address: got %q, %v", got, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("container to container: %v", err)
	}

	// A port another container holds is refused, and the failed Setup
	// leaves nothing behind.
	pid3 := startNetns(t)
	m, _ := ParsePort("18281:80")
	if _, err := Setup(ctx, cfg, "c3", pid3, m); err == nil || !strings.Contains(err.Error(), "Bind for 0.0.0.0:18281 failed: port is already allocated") {
		t.Errorf("conflicting port: %v", err)
	}
	if linkExists(vethName("stt0", "c3")) || strings.Contains(natRules(t, cfg.dnatChain()), "strata:c3") {
		t.Error("failed Setup left a veth or rules")
	}
	if out := nsIP(t, pid3, "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("failed Setup left eth0:\n%s", out)
	}
	// The same ID twice is refused.
	if _, err := Setup(ctx, cfg, "c1", pid3, nil); err == nil || !strings.Contains(err.Error(), "already attached") {
		t.Errorf("second Setup for c1: %v", err)
	}

	// Rules: c1 has one per port published on non-loopback IPv4, in the
	// chain of this bridge; the 127.0.0.1 one is the proxy's alone.
	rules := natRules(t, cfg.dnatChain())
	if n := strings.Count(rules, `"strata:c1"`); n != 2 {
		t.Errorf("c1 has %d DNAT rules, want 2:\n%s", n, rules)
	}
	for _, want := range []string{
		`! -i stt0 -p tcp -m tcp --dport 18281 -m comment --comment "strata:c1" -j DNAT --to-destination 10.213.0.2:80`,
		`! -i stt0 -p udp -m udp --dport 18282 -m comment --comment "strata:c1" -j DNAT --to-destination 10.213.0.2:5353`,
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("DNAT rules lack %q:\n%s", want, rules)
		}
	}
	if strings.Contains(rules, "127.0.0.1") || strings.Contains(rules, "--dport "+randomPort) {
		t.Errorf("a rule for the loopback-only port:\n%s", rules)
	}
	if post := natRules(t, cfg.postChain()); !strings.Contains(post, "-s 10.213.0.0/24 ! -o stt0 -j MASQUERADE") {
		t.Errorf("masquerade rule:\n%s", post)
	}

	// Cleanup refuses while containers are attached.
	if err := Cleanup(ctx, cfg); err == nil || !strings.Contains(err.Error(), "in use by 2 container(s): c1, c2") {
		t.Errorf("Cleanup while in use: %v", err)
	}

	// Teardown removes c1's rules and veth and frees its address; twice is fine.
	if err := Teardown(ctx, cfg, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := Teardown(ctx, cfg, "c1"); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	if rules := natRules(t, cfg.dnatChain()); strings.Contains(rules, "strata:c1") {
		t.Errorf("c1's rules left after Teardown:\n%s", rules)
	}
	if linkExists(att1.HostVeth) {
		t.Errorf("veth %s left after Teardown", att1.HostVeth)
	}
	st := readState(t, cfg)
	if _, ok := st.Containers["c1"]; ok || st.Containers["c2"] == nil {
		t.Errorf("state after Teardown: %+v", st.Containers)
	}
	// The shared pieces stay for c2.
	if !linkExists("stt0") || !strings.Contains(natRules(t, cfg.postChain()), "MASQUERADE") {
		t.Error("Teardown removed shared bridge or rules")
	}
}

func TestMasquerade(t *testing.T) {
	requireNetRoot(t)
	ctx := context.Background()
	cfg := testNet(t, "stt1", "10.213.1.0/24")

	// An "outside" host: its own namespace behind a veth, in a subnet it
	// has no route back from to the containers' one; only masquerading
	// makes the container's connection work.
	ext := startNetns(t)
	deleteLink(ctx, "stx1")
	if _, err := ip(ctx, "link", "add", "stx1", "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(ext)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteLink(ctx, "stx1") })
	for _, args := range [][]string{{"addr", "add", "10.214.1.1/24", "dev", "stx1"}, {"link", "set", "stx1", "up"}} {
		if _, err := ip(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	nsIP(t, ext, "addr", "add", "10.214.1.2/24", "dev", "eth0")
	nsIP(t, ext, "link", "set", "eth0", "up")
	serveIn(t, ext, "ext", 7000)

	pid := startNetns(t)
	att := attachTest(t, cfg, "m1", pid)
	var got string
	err := inNetns(t, pid, func() error {
		var err error
		got, err = readTCP("10.214.1.2:7000")
		return err
	})
	if want := "hi ext from 10.214.1.1"; err != nil || got != want {
		t.Errorf("container %s to outside: %q, %v; want %q", att.IP, got, err, want)
	}
}

func TestStaleRecordsPruned(t *testing.T) {
	requireNetRoot(t)
	ctx := context.Background()
	cfg := testNet(t, "stt2", "10.213.2.0/24")

	// A container whose strata died without Teardown: its process is gone.
	cmd := osexec.Command("sleep", "3600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m, _ := ParsePort("18291:80")
	dead, err := Setup(ctx, cfg, "dead", cmd.Process.Pid, m)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()

	// The next Setup removes its record and rules; its port is free again.
	pid := startNetns(t)
	att := attachTest(t, cfg, "alive", pid, "18291:80")
	if st := readState(t, cfg); st.Containers["dead"] != nil {
		t.Error("stale record kept")
	}
	rules := natRules(t, cfg.dnatChain())
	if strings.Contains(rules, "strata:dead") || !strings.Contains(rules, "strata:alive") {
		t.Errorf("rules after pruning:\n%s", rules)
	}
	if linkExists(dead.HostVeth) {
		t.Error("dead container's veth still there")
	}
	// Round-robin allocation does not hand the freed address out at once.
	if att.IP == dead.IP {
		t.Errorf("freed address %s reused at once", att.IP)
	}
}

func TestConcurrentSetup(t *testing.T) {
	requireNetRoot(t)
	ctx := context.Background()
	cfg := testNet(t, "stt3", "10.213.3.0/24")
	const n = 6
	pids := make([]int, n)
	for i := range pids {
		pids[i] = startNetns(t)
	}
	atts := make([]*Attachment, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		id := "p" + strconv.Itoa(i)
		t.Cleanup(func() {
			if err := Teardown(ctx, cfg, id); err != nil {
				t.Errorf("Teardown %s: %v", id, err)
			}
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A free host port each: no two may get the same.
			atts[i], errs[i] = Setup(ctx, cfg, id, pids[i], []PortMapping{{ContainerPort: 80}})
		}()
	}
	wg.Wait()
	ips := map[netip.Addr]bool{}
	ports := map[uint16]bool{}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("Setup p%d: %v", i, errs[i])
		}
		if ips[atts[i].IP] || ports[atts[i].Ports[0].HostPort] {
			t.Errorf("p%d: duplicate address or port: %+v", i, atts[i])
		}
		ips[atts[i].IP], ports[atts[i].Ports[0].HostPort] = true, true
		if out := nsIP(t, pids[i], "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, atts[i].Prefix.String()) {
			t.Errorf("p%d eth0: %s", i, out)
		}
	}
	// The shared rules were installed exactly once.
	out, err := iptables(ctx, "nat", "-S", "POSTROUTING")
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(out, "-j "+cfg.postChain()); c != 1 {
		t.Errorf("%d jumps to %s:\n%s", c, cfg.postChain(), out)
	}
}

func TestSetupRefusals(t *testing.T) {
	requireNetRoot(t)
	ctx := context.Background()
	cfg := testNet(t, "stt4", "10.213.4.0/24")
	// Our own namespace is the host's: configuring it would rewire the host.
	if _, err := Setup(ctx, cfg, "self", os.Getpid(), nil); err == nil || !strings.Contains(err.Error(), "not a container's own") {
		t.Errorf("own pid: %v", err)
	}
	if _, err := Setup(ctx, cfg, "x", 0, nil); err == nil {
		t.Error("pid 0 accepted")
	}
	if _, err := Setup(ctx, cfg, "bad id", startNetns(t), nil); err == nil {
		t.Error("bad ID accepted")
	}
	if err := Teardown(ctx, cfg, "never-set-up"); err != nil {
		t.Errorf("Teardown of an unknown ID: %v", err)
	}
	// A failure half way (the namespace already has an eth0) is rolled
	// back: no record, no rules, no host veth, the address still free.
	busy := startNetns(t)
	nsIP(t, busy, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	_, err := Setup(ctx, cfg, "half", busy, []PortMapping{{HostPort: 18296, ContainerPort: 80}})
	if err == nil || !strings.Contains(err.Error(), "making veth pair") {
		t.Errorf("Setup into a namespace with eth0: %v", err)
	}
	if st := readState(t, cfg); len(st.Containers) != 0 {
		t.Errorf("records left: %+v", st.Containers)
	}
	if linkExists(vethName("stt4", "half")) || strings.Contains(natRules(t, cfg.dnatChain()), "strata:half") {
		t.Error("failed Setup left a veth or rules")
	}
	att := attachTest(t, cfg, "whole", startNetns(t), "18296:80")
	if att.Ports[0].HostPort != 18296 {
		t.Errorf("port of the failed Setup not free: %v", att.Ports)
	}

	// A cancelled context stops Setup before it touches anything.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Setup(cctx, cfg, "late", startNetns(t), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Setup: %v", err)
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	requireNetRoot(t)
	ctx := context.Background()
	cfg := testNet(t, "stt5", "10.213.5.0/24")
	pid := startNetns(t)
	if _, err := Setup(ctx, cfg, "only", pid, []PortMapping{{HostPort: 18295, ContainerPort: 80}}); err != nil {
		t.Fatal(err)
	}
	if err := Teardown(ctx, cfg, "only"); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if linkExists("stt5") {
		t.Error("bridge left")
	}
	save, err := run(ctx, nil, "iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(save, "stt5") || strings.Contains(save, "10.213.5.") {
		t.Errorf("rules left:\n%s", save)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "stt5.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left: %v", err)
	}
	// Idempotent.
	if err := Cleanup(ctx, cfg); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
}
