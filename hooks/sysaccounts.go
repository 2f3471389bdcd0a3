package hooks

import (
	"bufio"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// The system files the run_as policy reads.
const (
	loginDefsFile = "/etc/login.defs"
	passwdFile    = "/etc/passwd"
	shadowFile    = "/etc/shadow"
)

// Defaults of login.defs and of the "users" group.
const (
	defaultIDMin    = 1000
	defaultUsersGID = 100
)

// systemAccounts is what tells a system account from a user's: the id
// ranges of login.defs, read once, and the passwd and shadow files, read
// at each check (accounts come and go while the daemon runs).
type systemAccounts struct {
	// uidMin and gidMin are UID_MIN and GID_MIN (default 1000).
	uidMin, gidMin uint32
	// usersGID is the "users" group (100 when there is none): the
	// traditional primary group of regular users, and JupyterLab's.
	usersGID uint32
	// passwd and shadow are the paths of the account files.
	passwd, shadow string
}

// readSystemAccounts reads the id ranges of loginDefs; a missing file or
// key keeps the default.
func readSystemAccounts(loginDefs, passwd, shadow string) systemAccounts {
	s := systemAccounts{uidMin: defaultIDMin, gidMin: defaultIDMin, usersGID: defaultUsersGID, passwd: passwd, shadow: shadow}
	if g, err := user.LookupGroup("users"); err == nil {
		if n, err := strconv.ParseUint(g.Gid, 10, 32); err == nil {
			s.usersGID = uint32(n)
		}
	}
	f, err := os.Open(loginDefs)
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		// login.defs numbers are read with strtol(..., 0): 0x.. and 0.. too.
		n, err := strconv.ParseUint(fields[1], 0, 32)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "UID_MIN":
			s.uidMin = uint32(n)
		case "GID_MIN":
			s.gidMin = uint32(n)
		}
	}
	return s
}

// entry returns the colon-separated fields of name's line in file; nil
// when the file cannot be read or has no such line.
func entry(file, name string) []string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Split(sc.Text(), ":"); fields[0] == name && len(fields) >= 2 {
			return fields
		}
	}
	return nil
}

// shell returns name's login shell from the passwd file (an empty field is
// /bin/sh); false when name is not in it.
func (s systemAccounts) shell(name string) (string, bool) {
	fields := entry(s.passwd, name)
	if len(fields) < 7 {
		return "", false
	}
	if fields[6] == "" {
		return "/bin/sh", true
	}
	return fields[6], true
}

// locked reports whether name's password is locked as passwd -S says "L":
// it starts with "!" or "*" in the shadow file or, without a shadow entry,
// in the passwd file. An unreadable shadow file (the daemon is not root)
// tells nothing.
func (s systemAccounts) locked(name string) bool {
	isLocked := func(pw string) bool { return strings.HasPrefix(pw, "!") || strings.HasPrefix(pw, "*") }
	if fields := entry(s.shadow, name); fields != nil {
		return isLocked(fields[1])
	}
	fields := entry(s.passwd, name)
	return fields != nil && fields[1] != "x" && isLocked(fields[1])
}
