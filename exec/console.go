package exec

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// console is a pseudo-terminal pair opened in a sandbox's devpts.
type console struct {
	master, slave int
}

// openConsole opens a new pty through the ptmx descriptor-to-be at
// ptmxDir/name (opened with openat2 inside ptmxDir, so nothing in the
// sandbox can redirect it) and its slave via TIOCGPTPEER, without a path
// lookup and without making either our controlling terminal.
func openConsole(dirfd int, name string, size WindowSize) (*console, error) {
	master, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   unix.O_RDWR | unix.O_NOCTTY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", name, err)
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(master)
		return nil, fmt.Errorf("unlocking pty: %w", err)
	}
	if size.Rows > 0 && size.Cols > 0 {
		ws := &unix.Winsize{Row: size.Rows, Col: size.Cols}
		if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, ws); err != nil {
			unix.Close(master)
			return nil, fmt.Errorf("setting terminal size: %w", err)
		}
	}
	slave, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		unix.Close(master)
		return nil, fmt.Errorf("opening pty slave: %w", errno)
	}
	return &console{master: master, slave: int(slave)}, nil
}

// handOver sends the master to the parent over the socket at fd and
// closes our copy.
func (c *console) handOver(fd int) error {
	err := unix.Sendmsg(fd, []byte{0}, unix.UnixRights(c.master), nil, 0)
	unix.Close(c.master)
	c.master = -1
	if err != nil {
		return fmt.Errorf("sending pty master: %w", err)
	}
	return nil
}

// useAsStdio puts the slave on descriptors 0, 1 and 2.
func (c *console) useAsStdio() error {
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(c.slave, fd, 0); err != nil {
			return fmt.Errorf("putting pty on fd %d: %w", fd, err)
		}
	}
	return nil
}

// recvFile receives one descriptor sent with SCM_RIGHTS.
func recvFile(sock *os.File) (*os.File, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	var n, oobn int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(rerr, unix.EAGAIN)
	}); err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	if n == 0 && oobn == 0 {
		return nil, errors.New("console socket closed")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("no descriptor received: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("no descriptor received: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

// notifyStarted writes the start byte to fd (0 = nobody asked) and
// closes it.
func notifyStarted(fd int) {
	if fd <= 0 {
		return
	}
	_, _ = unix.Write(fd, []byte{1})
	unix.Close(fd)
}
