// Package user resolves a Dockerfile user specification ("name", "uid",
// "name:group", "uid:gid", ...) against the /etc/passwd and /etc/group files
// of an image's root filesystem, with the rules runc and BuildKit use.
package user

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// User is a resolved user: the credentials a process runs with, or the owner
// COPY --chown gives to files.
type User struct {
	UID, GID uint32
	// Groups are the supplementary group IDs: the groups of /etc/group that
	// list the user's name, filled only when the spec names no group (as runc
	// does: an explicit group replaces the implicit memberships).
	Groups []uint32
	// Home is the passwd home directory, "/" when there is no entry.
	Home string
}

// passwdEntry is one parsed line of /etc/passwd.
type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

// groupEntry is one parsed line of /etc/group.
type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// Lookup resolves spec inside rootfs. spec is "" (root), "user" or
// "user:group", where each side is a name or a number. Names are looked up in
// rootfs's /etc/passwd and /etc/group, resolved within rootfs so a symlinked
// /etc in the image never makes us read host files. A numeric uid without a
// passwd entry gets gid 0 and home "/"; a numeric gid needs no entry.
func Lookup(rootfs, spec string) (User, error) {
	if rootfs == "" {
		return User{}, errors.New("looking up user: empty rootfs path")
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		if hasGroup {
			return User{}, fmt.Errorf("invalid user %q: empty user name", spec)
		}
		userPart = "0"
	}
	if hasGroup && groupPart == "" {
		return User{}, fmt.Errorf("invalid user %q: empty group name", spec)
	}

	passwd, err := readPasswd(rootfs)
	if err != nil {
		return User{}, err
	}
	uid, uidErr := parseID(userPart)
	var match *passwdEntry
	for i := range passwd {
		e := &passwd[i]
		if e.name == userPart || (uidErr == nil && e.uid == uid) {
			match = e
			break
		}
	}

	u := User{Home: "/"}
	var name string
	switch {
	case match != nil:
		u.UID, u.GID, name = match.uid, match.gid, match.name
		if match.home != "" {
			u.Home = match.home
		}
	case uidErr == nil:
		u.UID = uid // numeric without entry: gid 0, home "/"
	default:
		return User{}, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userPart)
	}

	// Only read /etc/group when it can matter: an explicit group, or a
	// named user whose memberships give supplementary groups.
	if !hasGroup && name == "" {
		return u, nil
	}
	groups, err := readGroup(rootfs)
	if err != nil {
		return User{}, err
	}
	if hasGroup {
		gid, gidErr := parseID(groupPart)
		for _, g := range groups {
			if g.name == groupPart || (gidErr == nil && g.gid == gid) {
				u.GID = g.gid
				return u, nil
			}
		}
		if gidErr != nil {
			return User{}, fmt.Errorf("unable to find group %s: no matching entries in group file", groupPart)
		}
		u.GID = gid
		return u, nil
	}
	for _, g := range groups {
		for _, m := range g.members {
			if m == name {
				u.Groups = append(u.Groups, g.gid)
				break
			}
		}
	}
	return u, nil
}

// parseID parses a decimal uid or gid.
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// readPasswd parses rootfs/etc/passwd; a missing file is an empty list.
func readPasswd(rootfs string) ([]passwdEntry, error) {
	var out []passwdEntry
	err := scanFile(rootfs, "/etc/passwd", func(fields []string) {
		if len(fields) < 4 {
			return
		}
		uid, err1 := parseID(fields[2])
		gid, err2 := parseID(fields[3])
		if fields[0] == "" || err1 != nil || err2 != nil {
			return // malformed lines are skipped, as libc does
		}
		e := passwdEntry{name: fields[0], uid: uid, gid: gid}
		if len(fields) > 5 {
			e.home = fields[5]
		}
		out = append(out, e)
	})
	return out, err
}

// readGroup parses rootfs/etc/group; a missing file is an empty list.
func readGroup(rootfs string) ([]groupEntry, error) {
	var out []groupEntry
	err := scanFile(rootfs, "/etc/group", func(fields []string) {
		if len(fields) < 3 {
			return
		}
		gid, err := parseID(fields[2])
		if fields[0] == "" || err != nil {
			return
		}
		e := groupEntry{name: fields[0], gid: gid}
		if len(fields) > 3 && fields[3] != "" {
			for _, m := range strings.Split(fields[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					e.members = append(e.members, m)
				}
			}
		}
		out = append(out, e)
	})
	return out, err
}

// scanFile opens name inside rootfs (symlinks resolved within rootfs) and
// calls fn with the colon-separated fields of each non-comment line.
func scanFile(rootfs, name string, fn func([]string)) error {
	p, err := securejoin.SecureJoin(rootfs, name)
	if err != nil {
		return fmt.Errorf("resolving %s in %s: %w", name, rootfs, err)
	}
	// O_NOFOLLOW: SecureJoin resolved every link; a link appearing now is
	// a race we refuse rather than follow out of rootfs. O_NONBLOCK: a FIFO
	// planted at the path must not hang us.
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("reading %s: not a regular file", name)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	return nil
}
