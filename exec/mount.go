package exec

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/snapshot"
)

// optionFlag maps a mount(8)-style option to its flag; clear means the
// option removes the flag.
func optionFlag(o string) (flag uintptr, clear, ok bool) {
	switch o {
	case "ro", "rw":
		return unix.MS_RDONLY, o == "rw", true
	case "nosuid", "suid":
		return unix.MS_NOSUID, o == "suid", true
	case "nodev", "dev":
		return unix.MS_NODEV, o == "dev", true
	case "noexec", "exec":
		return unix.MS_NOEXEC, o == "exec", true
	case "sync", "async":
		return unix.MS_SYNCHRONOUS, o == "async", true
	case "noatime", "atime":
		return unix.MS_NOATIME, o == "atime", true
	case "nodiratime", "diratime":
		return unix.MS_NODIRATIME, o == "diratime", true
	case "relatime":
		return unix.MS_RELATIME, false, true
	case "strictatime":
		return unix.MS_STRICTATIME, false, true
	case "bind":
		return unix.MS_BIND, false, true
	case "rbind":
		return unix.MS_BIND | unix.MS_REC, false, true
	}
	return 0, false, false
}

// propagationFlag maps a propagation option to its flags; they are applied
// with a separate mount call after the mount.
func propagationFlag(o string) (uintptr, bool) {
	var f uintptr
	switch strings.TrimPrefix(o, "r") {
	case "private":
		f = unix.MS_PRIVATE
	case "slave":
		f = unix.MS_SLAVE
	case "shared":
		f = unix.MS_SHARED
	case "unbindable":
		f = unix.MS_UNBINDABLE
	default:
		return 0, false
	}
	if strings.HasPrefix(o, "r") {
		f |= unix.MS_REC
	}
	return f, true
}

// parsedOptions is a snapshot.Mount's Options split for mount(2).
type parsedOptions struct {
	flags       uintptr
	propagation uintptr
	data        string
}

func parseOptions(opts []string) parsedOptions {
	var p parsedOptions
	var data []string
	for _, o := range opts {
		if f, clear, ok := optionFlag(o); ok {
			if clear {
				p.flags &^= f
			} else {
				p.flags |= f
			}
			continue
		}
		if f, ok := propagationFlag(o); ok {
			p.propagation = f
			continue
		}
		if o == "defaults" || o == "" {
			continue
		}
		data = append(data, o)
	}
	p.data = strings.Join(data, ",")
	return p
}

// isBind reports whether m is a bind mount.
func isBind(m snapshot.Mount) bool {
	return m.Type == "bind" || parseOptions(m.Options).flags&unix.MS_BIND != 0
}

// mountOne mounts m at target (a host path in the current namespace).
func mountOne(m snapshot.Mount, target string) error {
	p := parseOptions(m.Options)
	if m.Type == "bind" {
		p.flags |= unix.MS_BIND
	}
	if p.flags&unix.MS_BIND == 0 {
		if err := unix.Mount(m.Source, target, m.Type, p.flags, p.data); err != nil {
			return fmt.Errorf("mounting %s at %s: %w", m.Type, m.Target, err)
		}
	} else {
		if err := unix.Mount(m.Source, target, "", p.flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
			return fmt.Errorf("bind mounting %s at %s: %w", m.Source, m.Target, err)
		}
		// A bind ignores the other flags; apply them to the new mount (and
		// its submounts for rbind, so a recursive ro bind is ro throughout).
		rest := p.flags &^ (unix.MS_BIND | unix.MS_REC)
		if err := setMountAttrs(target, rest, p.flags&unix.MS_REC != 0); err != nil {
			return fmt.Errorf("setting flags of bind mount at %s: %w", m.Target, err)
		}
	}
	if p.propagation != 0 {
		if err := unix.Mount("", target, "", p.propagation, ""); err != nil {
			return fmt.Errorf("setting propagation of %s: %w", m.Target, err)
		}
	}
	return nil
}

// setMountAttrs sets ro/nosuid/nodev/noexec/atime flags on the mount at
// target, falling back to a bind remount on kernels without mount_setattr.
func setMountAttrs(target string, flags uintptr, recursive bool) error {
	var set uint64
	for _, f := range []struct {
		flag uintptr
		attr uint64
	}{
		{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY},
		{unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
		{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
		{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
		{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
	} {
		if flags&f.flag != 0 {
			set |= f.attr
		}
	}
	attr := unix.MountAttr{Attr_set: set}
	switch {
	case flags&unix.MS_NOATIME != 0:
		attr.Attr_set |= unix.MOUNT_ATTR_NOATIME
		attr.Attr_clr |= unix.MOUNT_ATTR__ATIME
	case flags&unix.MS_STRICTATIME != 0:
		attr.Attr_set |= unix.MOUNT_ATTR_STRICTATIME
		attr.Attr_clr |= unix.MOUNT_ATTR__ATIME
	}
	if attr.Attr_set == 0 && attr.Attr_clr == 0 {
		return nil
	}
	var atFlags uint = unix.AT_SYMLINK_NOFOLLOW
	if recursive {
		atFlags |= unix.AT_RECURSIVE
	}
	err := unix.MountSetattr(unix.AT_FDCWD, target, atFlags, &attr)
	if errors.Is(err, unix.ENOSYS) {
		err = unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|flags, "")
	}
	return err
}
