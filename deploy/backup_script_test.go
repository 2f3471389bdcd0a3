package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/store"
)

// The component's backup script, run as bin/birdhouse runs it, with fakes
// of docker and of bin/birdhouse on PATH. Both are this test binary under
// another name: they record their arguments, and the fake docker runs what
// a container would on the host, its bind mounts turned into paths.

// Environment of the fakes.
const (
	fakeLogVar   = "DEPLOYTEST_FAKE_LOG"   // file the calls are appended to, one JSON array each
	fakeBinVar   = "DEPLOYTEST_COWBIRD"    // the cowbird binary standing for the image
	fakeImageVar = "DEPLOYTEST_IMAGE"      // the image name of cowbird
	fakeBashVar  = "DEPLOYTEST_BASH_IMAGE" // the image name of BASH_IMAGE
)

func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "docker":
		os.Exit(fakeDocker(os.Args[1:]))
	case "birdhouse":
		record(append([]string{"birdhouse"}, os.Args[1:]...))
		os.Exit(0)
	}
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// record appends a call to the log of the fakes.
func record(argv []string) {
	f, err := os.OpenFile(os.Getenv(fakeLogVar), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake:", err)
		os.Exit(99)
	}
	defer f.Close()
	line, _ := json.Marshal(argv)
	fmt.Fprintf(f, "%s\n", line)
}

// fakeDocker implements `docker run --rm [-v SRC:DST[:MODE]]... IMAGE ARGS...`
// for the cowbird image (the cowbird binary) and the bash image (the host's
// commands), with the container paths of ARGS replaced by the mounted host
// paths.
func fakeDocker(args []string) int {
	record(append([]string{"docker"}, args...))
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(os.Stderr, "fake docker: only run is known")
		return 125
	}
	args = args[1:]
	mounts := map[string]string{} // container path -> host path
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "--rm":
			args = args[1:]
		case "-v", "--volume":
			parts := strings.Split(args[1], ":")
			if len(parts) < 2 || !filepath.IsAbs(parts[0]) || !filepath.IsAbs(parts[1]) {
				fmt.Fprintf(os.Stderr, "fake docker: volume %q is not HOST:CONTAINER (absolute paths)\n", args[1])
				return 125
			}
			mounts[parts[1]] = parts[0]
			args = args[2:]
		default:
			fmt.Fprintf(os.Stderr, "fake docker: unknown option %s\n", args[0])
			return 125
		}
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "fake docker: no image")
		return 125
	}
	image, argv := args[0], args[1:]
	var targets []string
	for dst := range mounts {
		targets = append(targets, regexp.QuoteMeta(dst))
	}
	slices.SortFunc(targets, func(a, b string) int { return len(b) - len(a) })
	if len(targets) > 0 {
		re := regexp.MustCompile(`(^|[\s'"=])(` + strings.Join(targets, "|") + `)($|[/\s'"*])`)
		for i, a := range argv {
			for range 3 { // adjacent matches share a separator
				a = re.ReplaceAllStringFunc(a, func(m string) string {
					sm := re.FindStringSubmatch(m)
					return sm[1] + mounts[sm[2]] + sm[3]
				})
			}
			argv[i] = a
		}
	}
	var cmd *exec.Cmd
	switch image {
	case os.Getenv(fakeImageVar):
		cmd = exec.Command(os.Getenv(fakeBinVar), argv...)
	case os.Getenv(fakeBashVar):
		if len(argv) == 0 {
			return 125
		}
		cmd = exec.Command(argv[0], argv[1:]...)
	default:
		fmt.Fprintf(os.Stderr, "fake docker: unknown image %s\n", image)
		return 125
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "fake docker:", err)
		return 127
	}
	return 0
}

// runnerFunctions implements the interface bird-house's backup runner
// gives a component's script (scripts/backup.include.sh): stop the listed
// services, run the command, start them again; a failed command is logged.
const runnerFunctions = `
log() { echo "log $*" >&2; }
backup_create_runner() {
  [ -n "$2" ] || { echo "no command" >&2; exit 2; }
  [ -z "$3" ] || "$BIRDHOUSE_EXE" --quiet compose stop $3
  $2 || echo "FAILED: $1" >&2
  [ -z "$3" ] || "$BIRDHOUSE_EXE" --quiet compose start $3
}
backup_restore_runner() {
  [ -n "$2" ] && [ -n "$3" ] || { echo "no command or volume destination" >&2; exit 2; }
  echo "volume destination: $3" >&2
  [ -z "$4" ] || "$BIRDHOUSE_EXE" --quiet compose stop $4
  $2 || echo "FAILED: $1" >&2
  [ -z "$4" ] || "$BIRDHOUSE_EXE" --quiet compose start $4
}
`

// backupEnv is a host prepared for the backup script.
type backupEnv struct {
	dir, state, volume, workspaces, log string
	env                                 []string
}

func newBackupEnv(t *testing.T, confDirs string) *backupEnv {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &backupEnv{
		dir:        dir,
		state:      filepath.Join(dir, "data", "cowbird_persist"),
		volume:     filepath.Join(dir, "backup-volume"),
		workspaces: filepath.Join(dir, "data", "user_workspaces"),
		log:        filepath.Join(dir, "calls.log"),
	}
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{bin, e.volume, e.workspaces} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"docker", "birdhouse"} {
		if err := os.Symlink(exe, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	const image, bash = "ghcr.io/cowbird-go/cowbird:0.1.0", "bash:5.1.4"
	e.env = []string{
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"BIRDHOUSE_EXE=" + filepath.Join(bin, "birdhouse"),
		"BIRDHOUSE_BACKUP_VOLUME=" + e.volume,
		"BIRDHOUSE_DATA_PERSIST_SHARED_ROOT=" + filepath.Join(dir, "data"),
		"USER_WORKSPACES=user_workspaces",
		"COWBIRD_DATA_DIR=" + e.state,
		"COWBIRD_IMAGE_API=" + image,
		"BASH_IMAGE=" + bash,
		"ALL_CONF_DIRS=" + confDirs,
		fakeLogVar + "=" + e.log, fakeBinVar + "=" + builtBinary(t), fakeImageVar + "=" + image, fakeBashVar + "=" + bash,
	}
	return e
}

// run sources the script as bin/birdhouse does and calls fn; it returns
// the calls the fakes recorded and the script's stderr.
func (e *backupEnv) run(t *testing.T, fn string) ([][]string, string) {
	t.Helper()
	os.Remove(e.log)
	script, err := filepath.Abs(filepath.Join(componentDir, "backup"))
	if err != nil {
		t.Fatal(err)
	}
	runner := filepath.Join(e.dir, "runner.sh")
	if err := os.WriteFile(runner, []byte(runnerFunctions), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `( . "$1"; . "$2"; `+fn+` )`, "sh", script, runner)
	cmd.Env = e.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("%s: %v\n%s%s", fn, err, out, stderr.String())
	}
	if strings.Contains(stderr.String(), "FAILED") {
		t.Errorf("%s:\n%s", fn, stderr.String())
	}
	var calls [][]string
	data, err := os.ReadFile(e.log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l == "" {
			continue
		}
		var argv []string
		if err := json.Unmarshal([]byte(l), &argv); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, argv)
	}
	return calls, stderr.String()
}

// wantCalls compares calls with want, each a space-joined argv.
func wantCalls(t *testing.T, fn string, calls [][]string, want ...string) {
	t.Helper()
	var got []string
	for _, c := range calls {
		got = append(got, strings.Join(c, " "))
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s calls:\n  %s\nwant:\n  %s", fn, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestBirdhouseBackupScript(t *testing.T) {
	e := newBackupEnv(t, "./components/proxy ./components/magpie ./components/cowbird ./components/jupyterhub")
	db, err := store.Open(e.state)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if _, err := db.Append(context.Background(), handlers.UserEvent{Action: handlers.Created, UserName: u}, []string{"FileSystem"}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	dbFile := filepath.Join(e.state, store.FileName)
	before, err := store.Verify(dbFile)
	if err != nil {
		t.Fatal(err)
	}
	image := "ghcr.io/cowbird-go/cowbird:0.1.0"
	stateRun := func(mode string, args string) string {
		return "docker run --rm -v " + e.state + ":/var/lib/cowbird -v " + e.volume + ":/backup:" + mode + " " + image + " " + args
	}

	calls, _ := e.run(t, "backup_application")
	wantCalls(t, "backup_application", calls,
		"birdhouse --quiet compose stop cowbird",
		stateRun("rw", "backup --data-dir /var/lib/cowbird /backup/cowbird/cowbird.db"),
		"birdhouse --quiet compose start cowbird")
	saved, err := store.Verify(filepath.Join(e.volume, "cowbird", "cowbird.db"))
	if err != nil {
		t.Fatalf("the backup volume holds no valid cowbird/cowbird.db: %v", err)
	}
	if saved.Keys["events"] != 2 || saved.Keys["pending"] != 2 {
		t.Errorf("backup %v, want the 2 pending events", saved)
	}

	// Lose the database, then restore it.
	if err := os.Remove(dbFile); err != nil {
		t.Fatal(err)
	}
	calls, stderr := e.run(t, "restore_application")
	wantCalls(t, "restore_application", calls,
		"birdhouse --quiet compose stop cowbird",
		"docker run --rm -v "+e.volume+":/backup:ro bash:5.1.4 test -f /backup/cowbird/cowbird.db",
		stateRun("ro", "restore --data-dir /var/lib/cowbird /backup/cowbird/cowbird.db"),
		"birdhouse --quiet compose start cowbird")
	if !strings.Contains(stderr, "volume destination: cowbird\n") {
		t.Errorf("restore_application: restic restores %q, want cowbird/", stderr)
	}
	after, err := store.Verify(dbFile)
	if err != nil || after.Keys["events"] != before.Keys["events"] || after.Keys["pending"] != before.Keys["pending"] {
		t.Errorf("restored database %v (%v), want %v", after, err, before)
	}

	// A backup made by the Python Cowbird holds a dump, no cowbird.db: the
	// state is left alone.
	if err := os.RemoveAll(filepath.Join(e.volume, "cowbird")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(e.volume, "cowbird", "cowbird"), 0o755); err != nil {
		t.Fatal(err)
	}
	calls, stderr = e.run(t, "restore_application")
	wantCalls(t, "restore_application of a Python backup", calls,
		"birdhouse --quiet compose stop cowbird",
		"docker run --rm -v "+e.volume+":/backup:ro bash:5.1.4 test -f /backup/cowbird/cowbird.db",
		"birdhouse --quiet compose start cowbird")
	if !strings.Contains(stderr, "log WARN") {
		t.Errorf("restore of a backup without cowbird.db does not warn:\n%s", stderr)
	}
	if again, err := store.Verify(dbFile); err != nil || again.TxID != after.TxID {
		t.Errorf("the state changed: %v, %v", again, err)
	}

	// User workspaces: copied as upstream, with JupyterHub stopped too.
	ws := filepath.Join(e.workspaces, "alice", "notebooks.txt")
	if err := os.MkdirAll(filepath.Dir(ws), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ws, []byte("alice's work"), 0o640); err != nil {
		t.Fatal(err)
	}
	userRun := func(script string) string {
		return "docker run --rm -v " + e.volume + ":/backup -v " + e.workspaces + ":/user-data bash:5.1.4 sh -c " + script
	}
	calls, _ = e.run(t, "backup_user")
	wantCalls(t, "backup_user", calls,
		"birdhouse --quiet compose stop cowbird jupyterhub",
		userRun("cp -a /user-data /backup/cowbird-user-data"),
		"birdhouse --quiet compose start cowbird jupyterhub")
	if err := os.WriteFile(ws, []byte("overwritten"), 0o640); err != nil {
		t.Fatal(err)
	}
	calls, stderr = e.run(t, "restore_user")
	wantCalls(t, "restore_user", calls,
		"birdhouse --quiet compose stop cowbird jupyterhub",
		userRun("rm -fr /user-data/* && cp -a /backup/cowbird-user-data/* /user-data/"),
		"birdhouse --quiet compose start cowbird jupyterhub")
	if b, err := os.ReadFile(ws); err != nil || string(b) != "alice's work" {
		t.Errorf("restored workspace file %q, %v", b, err)
	}
	if !strings.Contains(stderr, "volume destination: cowbird-user-data\n") {
		t.Errorf("restore_user: restic restores %q, want cowbird-user-data/", stderr)
	}
}

// TestBirdhouseBackupScriptWithoutJupyterHub: with JupyterHub not enabled
// there is no jupyterhub service to stop.
func TestBirdhouseBackupScriptWithoutJupyterHub(t *testing.T) {
	e := newBackupEnv(t, "./components/proxy ./components/magpie ./components/cowbird")
	calls, _ := e.run(t, "backup_user")
	if len(calls) != 3 || strings.Join(calls[0], " ") != "birdhouse --quiet compose stop cowbird" {
		t.Errorf("backup_user calls %q, want cowbird alone stopped", calls)
	}
	// The database does not exist yet: the backup fails, and says so.
	e.run(t, "true") // resets the log
	cmd := exec.Command("sh", "-c", `. "$1"; . "$2"; backup_application`, "sh",
		filepath.Join(componentDir, "backup"), filepath.Join(e.dir, "runner.sh"))
	cmd.Env = e.env
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "FAILED: cowbird state database") || !strings.Contains(string(out), "no such file") {
		t.Errorf("backup of a missing database:\n%s", out)
	}
}
