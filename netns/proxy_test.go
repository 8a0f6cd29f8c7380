package netns

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// loopback is the "container" address of these tests.
func loopback() netip.Addr { return netip.MustParseAddr("127.0.0.1") }

// tcpBackend answers each connection with "got <what it read>" after the
// client half-closes, then closes.
func tcpBackend(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write([]byte("got " + string(b)))
			}()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// udpBackend echoes datagrams prefixed with "echo ".
func udpBackend(t *testing.T) uint16 {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo "), buf[:n]...), from)
		}
	}()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

// startProxy binds a proxy on a free loopback port and serves it until
// the returned cancel; done receives Serve's result.
func startProxy(t *testing.T, proto string, ctrPort uint16) (m PortMapping, cancel func(), done chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m = PortMapping{HostIP: loopback(), ContainerPort: ctrPort, Proto: proto}
	port, err := ephemeralPort(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	m.HostPort = port
	p, err := ListenProxy(ctx, m, loopback())
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Addr().String(); got != m.listenAddr(port) {
		t.Errorf("proxy bound %s, want %s", got, m.listenAddr(port))
	}
	done = make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	return m, cancel, done
}

func exchangeTCP(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	// The half-close must reach the backend for it to answer.
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

func exchangeUDP(addr, msg string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func TestProxyTCP(t *testing.T) {
	m, cancel, done := startProxy(t, "tcp", tcpBackend(t))
	addr := m.listenAddr(m.HostPort)
	big := strings.Repeat("x", 1<<20)
	for _, msg := range []string{"hello", "", big} {
		got, err := exchangeTCP(addr, msg)
		if err != nil {
			t.Fatal(err)
		}
		if got != "got "+msg {
			t.Errorf("sent %d bytes, got back %d: %.40q", len(msg), len(got), got)
		}
	}

	// A connection open when the proxy stops is closed, and the port is
	// free again.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after the proxy stopped")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still held after Serve returned: %v", err)
	}
	l.Close()
}

func TestProxyTCPBackendDown(t *testing.T) {
	// Nothing listens on the container port: the client's connection is
	// accepted and closed, and the proxy keeps serving.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := uint16(dead.Addr().(*net.TCPAddr).Port)
	dead.Close()
	m, cancel, done := startProxy(t, "tcp", deadPort)
	addr := m.listenAddr(m.HostPort)
	for i := 0; i < 2; i++ {
		got, err := exchangeTCP(addr, "x")
		if err == nil && got != "" {
			t.Errorf("got %q from a dead backend", got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestProxyUDP(t *testing.T) {
	m, cancel, done := startProxy(t, "udp", udpBackend(t))
	addr := m.listenAddr(m.HostPort)
	// Two clients, two flows: each gets its own answers.
	for _, msg := range []string{"one", "two", "three"} {
		got, err := exchangeUDP(addr, msg)
		if err != nil {
			t.Fatal(err)
		}
		if got != "echo "+msg {
			t.Errorf("got %q", got)
		}
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 100)
	for _, msg := range []string{"a", "b"} {
		c.Write([]byte(msg))
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "echo "+msg {
			t.Errorf("same flow, %q: got %q, %v", msg, buf[:n], err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("port still held after Serve returned: %v", err)
	}
	pc.Close()
}

func TestProxyErrors(t *testing.T) {
	ctx := context.Background()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	m := PortMapping{HostIP: loopback(), HostPort: uint16(busy.Addr().(*net.TCPAddr).Port), ContainerPort: 80}
	if err := Proxy(ctx, m, loopback()); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("busy port: %v", err)
	}
	if _, err := ListenProxy(ctx, PortMapping{ContainerPort: 80}, loopback()); err == nil {
		t.Error("no host port: no error")
	}
	if _, err := ListenProxy(ctx, PortMapping{HostPort: 1, ContainerPort: 80, Proto: "sctp"}, loopback()); err == nil {
		t.Error("sctp: no error")
	}
	if _, err := ListenProxy(ctx, PortMapping{HostPort: 1, ContainerPort: 80}, netip.Addr{}); err == nil {
		t.Error("no container address: no error")
	}
	// Serve on a cancelled context returns at once.
	p, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.HostPort = uint16(p.Addr().(*net.TCPAddr).Port)
	p.Close()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	pp, err := ListenProxy(ctx, m, loopback())
	if err != nil {
		t.Fatal(err)
	}
	if err := pp.Serve(cctx); err != nil {
		t.Errorf("Serve on cancelled ctx: %v", err)
	}
}
