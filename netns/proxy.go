package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// udpIdle is how long a UDP client's flow is kept without traffic (what
// Docker's proxy and conntrack's default use for unreplied UDP).
const udpIdle = 90 * time.Second

// PortProxy forwards one published port to a container in userspace.
type PortProxy struct {
	m      PortMapping
	target string // container address:port
	ln     net.Listener
	pc     net.PacketConn
}

// ListenProxy binds the host side of m (HostIP:HostPort, every address
// when HostIP is zero); Serve then forwards to containerIP:ContainerPort.
// Binding first lets the caller fail the container before it starts when
// the port is taken.
func ListenProxy(ctx context.Context, m PortMapping, containerIP netip.Addr) (*PortProxy, error) {
	if m.HostPort == 0 || m.ContainerPort == 0 {
		return nil, fmt.Errorf("netns: proxy for %s needs both ports", m)
	}
	if !containerIP.IsValid() {
		return nil, errors.New("netns: proxy without a container address")
	}
	p := &PortProxy{m: m, target: netip.AddrPortFrom(containerIP, m.ContainerPort).String()}
	var lc net.ListenConfig
	addr := m.listenAddr(m.HostPort)
	var err error
	switch m.proto() {
	case "tcp":
		p.ln, err = lc.Listen(ctx, "tcp", addr)
	case "udp":
		p.pc, err = lc.ListenPacket(ctx, "udp", addr)
	default:
		return nil, fmt.Errorf("invalid proto: %s", m.Proto)
	}
	if err != nil {
		return nil, fmt.Errorf("netns: publishing %s: %w", m, err)
	}
	return p, nil
}

// Addr is the bound host address.
func (p *PortProxy) Addr() net.Addr {
	if p.ln != nil {
		return p.ln.Addr()
	}
	return p.pc.LocalAddr()
}

// Close releases the host port; Serve, if running, returns.
func (p *PortProxy) Close() error {
	if p.ln != nil {
		return p.ln.Close()
	}
	return p.pc.Close()
}

// Serve forwards until ctx ends (then it returns nil, with the port
// released and every forwarded connection closed) or the socket fails.
func (p *PortProxy) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()
	defer p.Close()
	var err error
	if p.ln != nil {
		err = p.serveTCP(ctx)
	} else {
		err = p.serveUDP(ctx)
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Proxy publishes m for a container at containerIP until ctx ends: the
// userspace half of port publishing, which the caller runs for each of
// Attachment.Ports in its per-container monitor process. It returns nil
// when ctx ends, or the error that kept it from serving.
func Proxy(ctx context.Context, m PortMapping, containerIP netip.Addr) error {
	p, err := ListenProxy(ctx, m, containerIP)
	if err != nil {
		return err
	}
	return p.Serve(ctx)
}

func (p *PortProxy) serveTCP(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return err
			}
			// A client gone before accept, or out of descriptors for a
			// moment: keep serving the others.
			if errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
				continue
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.forwardTCP(ctx, c.(*net.TCPConn))
		}()
	}
}

// forwardTCP copies both ways, passing half-closes on, until both sides
// are done or ctx ends.
func (p *PortProxy) forwardTCP(ctx context.Context, client *net.TCPConn) {
	defer client.Close()
	var d net.Dialer
	sc, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		return // the client sees a reset connection, as with Docker's proxy
	}
	server := sc.(*net.TCPConn)
	defer server.Close()
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		server.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src *net.TCPConn) {
		defer wg.Done()
		// io.Copy between TCP sockets uses splice(2).
		if _, err := io.Copy(dst, src); err != nil {
			// A broken side: drop both so the other copy ends too.
			client.Close()
			server.Close()
			return
		}
		dst.CloseWrite()
	}
	go pipe(server, client)
	go pipe(client, server)
	wg.Wait()
}

// udpFlow is one client's traffic: a socket connected to the container.
type udpFlow struct {
	conn *net.UDPConn
	last atomic.Int64 // unix nanoseconds of the latest packet either way
}

func (p *PortProxy) serveUDP(ctx context.Context) error {
	var (
		mu    sync.Mutex
		flows = map[string]*udpFlow{}
		wg    sync.WaitGroup
	)
	defer func() {
		mu.Lock()
		for _, f := range flows {
			f.conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	target, err := net.ResolveUDPAddr("udp", p.target)
	if err != nil {
		return err
	}
	buf := make([]byte, 65535)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return err
			}
			continue // e.g. ICMP errors reported on the socket
		}
		key := from.String()
		mu.Lock()
		f := flows[key]
		if f == nil {
			c, derr := net.DialUDP("udp", nil, target)
			if derr != nil {
				mu.Unlock()
				continue
			}
			f = &udpFlow{conn: c}
			// Set before the reply goroutine reads it for its deadline.
			f.last.Store(time.Now().UnixNano())
			flows[key] = f
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.udpReplies(f, from)
				mu.Lock()
				if flows[key] == f {
					delete(flows, key)
				}
				mu.Unlock()
				f.conn.Close()
			}()
		}
		mu.Unlock()
		f.last.Store(time.Now().UnixNano())
		f.conn.Write(buf[:n]) // a lost datagram is UDP's to lose
	}
}

// udpReplies sends the container's datagrams back to the client until the
// flow has been idle for udpIdle or its socket is closed.
func (p *PortProxy) udpReplies(f *udpFlow, client net.Addr) {
	buf := make([]byte, 65535)
	for {
		deadline := time.Unix(0, f.last.Load()).Add(udpIdle)
		f.conn.SetReadDeadline(deadline)
		n, err := f.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if time.Since(time.Unix(0, f.last.Load())) < udpIdle {
					continue // traffic came in meanwhile
				}
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP port unreachable from the container and such
		}
		f.last.Store(time.Now().UnixNano())
		if _, err := p.pc.WriteTo(buf[:n], client); err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}
