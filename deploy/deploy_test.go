package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// root is the module root, where the Dockerfile and the build context are.
const root = ".."

// hangGuard bounds every wait on a child process.
const hangGuard = 30 * time.Second

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case, e.g. RUN
	args string
}

// stage is one FROM stage of a Dockerfile.
type stage struct {
	image, name string
	instrs      []instruction
}

// find returns the stage's instructions named cmd.
func (s stage) find(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// parseDockerfile splits a Dockerfile into stages. It knows what this
// project's Dockerfile uses: comments, blank lines, backslash continuations,
// FROM [--flag] image [AS name].
func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			var words []string
			for _, w := range strings.Fields(in.args) {
				if !strings.HasPrefix(w, "--") {
					words = append(words, w)
				}
			}
			s := stage{image: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				s.name = words[2]
			}
			stages = append(stages, s)
			return
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s: %s before the first FROM", path, in.cmd)
			}
			return
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return stages
}

// execForm decodes the JSON (exec) form of CMD, ENTRYPOINT or HEALTHCHECK CMD.
func execForm(t *testing.T, in instruction, s string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("%s %s: not in exec form (JSON array): %v", in.cmd, in.args, err)
	}
	return out
}

var shellVar = regexp.MustCompile(`^(\{\w+\}|\w+)`)

// shellWords splits a shell command line on blanks, honouring single and
// double quotes (no escapes inside them), and expands ${NAME} and $NAME
// outside single quotes from vars.
func shellWords(s string, vars map[string]string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote == 0 && (r == ' ' || r == '\t'):
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			continue
		case quote == 0 && (r == '"' || r == '\''):
			quote = r
		case r == quote:
			quote = 0
		case r == '$' && quote != '\'':
			m := shellVar.FindString(string(rs[i+1:]))
			w.WriteString(vars[strings.Trim(m, "{}")])
			i += len([]rune(m))
		default:
			w.WriteRune(r)
		}
		inWord = true
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// goBuild is the build command of the Dockerfile's build stage: the
// environment assignments before "go" and the arguments after it.
type goBuild struct {
	env  []string
	args []string
}

// dockerfileBuild finds the RUN ... go build of ./cmd/cowbird in stages and
// returns it with ${VERSION} set to version.
func dockerfileBuild(t *testing.T, stages []stage, version string) (stage, goBuild) {
	t.Helper()
	for _, s := range stages {
		for _, in := range s.find("RUN") {
			words := shellWords(in.args, map[string]string{"VERSION": version})
			var b goBuild
			for len(words) > 0 && strings.Contains(words[0], "=") {
				b.env, words = append(b.env, words[0]), words[1:]
			}
			if len(words) > 2 && words[0] == "go" && words[1] == "build" {
				b.args = words[1:]
				return s, b
			}
		}
	}
	t.Fatal("Dockerfile: no RUN go build")
	return stage{}, goBuild{}
}

// flagValue returns the value of -name VALUE or -name=VALUE in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("got %d stages, want a build stage and a final stage", len(stages))
	}
	build, b := dockerfileBuild(t, stages, "test")
	if !strings.HasPrefix(build.image, "golang:1.26") {
		t.Errorf("build stage FROM %s, want a golang:1.26 image", build.image)
	}
	if !slices.Contains(b.env, "CGO_ENABLED=0") {
		t.Errorf("go build env %q, want CGO_ENABLED=0", b.env)
	}
	if b.args[len(b.args)-1] != "./cmd/cowbird" {
		t.Errorf("go build %q, want the package ./cmd/cowbird last", b.args)
	}
	out, ok := flagValue(b.args, "-o")
	if !ok {
		t.Fatalf("go build %q has no -o", b.args)
	}

	final := stages[len(stages)-1]
	if strings.HasPrefix(final.image, "golang") {
		t.Errorf("final stage FROM %s: the toolchain image is not small", final.image)
	}
	for _, in := range final.find("USER") {
		if in.args != "root" && in.args != "0" && in.args != "0:0" {
			t.Errorf("final stage USER %s: cowbird must run as root (it chowns and chmods)", in.args)
		}
	}
	var bin string
	for _, in := range final.find("COPY") {
		f := strings.Fields(in.args)
		if len(f) == 3 && f[0] == "--from="+build.name && f[1] == out {
			bin = f[2]
		}
	}
	if bin == "" {
		t.Fatalf("final stage does not COPY --from=%s %s", build.name, out)
	}

	one := func(cmd string) instruction {
		t.Helper()
		ins := final.find(cmd)
		if len(ins) != 1 {
			t.Fatalf("final stage has %d %s, want 1", len(ins), cmd)
		}
		return ins[0]
	}
	hc := one("HEALTHCHECK")
	_, test, ok := strings.Cut(hc.args, "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %s has no CMD", hc.args)
	}
	if got := execForm(t, hc, test); !slices.Equal(got, []string{bin, "healthcheck"}) {
		t.Errorf("HEALTHCHECK %s, want CMD [%q, \"healthcheck\"]", hc.args, bin)
	}
	ep := one("ENTRYPOINT")
	if got := execForm(t, ep, ep.args); !slices.Equal(got, []string{bin}) {
		t.Errorf("ENTRYPOINT %q, want [%q]", got, bin)
	}
	cmd := one("CMD")
	args := execForm(t, cmd, cmd.args)
	dataDir, ok := flagValue(args, "--data-dir")
	if len(args) == 0 || args[0] != "serve" || !ok {
		t.Fatalf("CMD %q, want serve --data-dir DIR", args)
	}
	if v := one("VOLUME"); !slices.Contains(strings.Fields(v.args), dataDir) {
		t.Errorf("VOLUME %s, want the data dir %s", v.args, dataDir)
	}
	if e := one("ENV"); !regexp.MustCompile(`^COWBIRD_CONFIG_PATH=/\S+$`).MatchString(e.args) {
		t.Errorf("ENV %s, want COWBIRD_CONFIG_PATH=<absolute path>", e.args)
	}
}

// TestDockerignore checks that the build context keeps every file the
// binary is built from.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, filepath.Clean(strings.TrimPrefix(l, "/")))
		}
	}
	if !slices.Contains(patterns, ".git") {
		t.Errorf(".dockerignore %q does not exclude .git", patterns)
	}
	// Files of the main module's packages that ./cmd/cowbird imports.
	list := exec.Command("go", "list", "-deps", "-f",
		`{{if and .Module .Module.Main}}{{range .GoFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/cowbird")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"go.mod", "go.sum"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(abs, f)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rel)
	}
	for _, f := range files {
		// Docker excludes a path when it or one of its parents matches.
		for p := f; p != "."; p = filepath.Dir(p) {
			for _, pat := range patterns {
				if ok, _ := filepath.Match(pat, p); ok {
					t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", pat, f)
				}
			}
		}
	}
}

// binaryVersion is the VERSION build argument of the test binary.
const binaryVersion = "9.9.9-deploytest"

// built is the binary built once per test process (see builtBinary).
var built struct {
	sync.Mutex
	dir, path string
	err       error
}

// builtBinary builds the binary the way the Dockerfile does, once, and
// returns its path. TestMain removes it.
func builtBinary(t *testing.T) string {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	if built.path == "" && built.err == nil {
		_, b := dockerfileBuild(t, parseDockerfile(t, filepath.Join(root, "Dockerfile")), binaryVersion)
		built.dir, built.err = os.MkdirTemp("", "deploytest-")
		if built.err == nil {
			bin := filepath.Join(built.dir, "cowbird")
			args := slices.Clone(b.args)
			for i, a := range args {
				if a == "-o" {
					args[i+1] = bin
				}
			}
			build := exec.Command("go", args...)
			build.Dir = root
			build.Env = append(os.Environ(), b.env...)
			if out, err := build.CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			} else {
				built.path = bin
			}
		}
	}
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// TestBinary builds the binary the way the Dockerfile does and runs it.
func TestBinary(t *testing.T) {
	bin := builtBinary(t)
	const version = binaryVersion

	t.Run("static", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("binary has a PT_INTERP program header: it is dynamically linked")
			}
		}
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
			t.Errorf("DT_NEEDED libraries %q (err %v), want none", libs, err)
		}
	})

	t.Run("version", func(t *testing.T) {
		out, code := runBin(t, bin, nil, "version")
		if code != 0 || !strings.HasPrefix(out, "cowbird "+version+" ") {
			t.Errorf("version: exit %d, output %q, want cowbird %s ...", code, out, version)
		}
	})

	t.Run("serve and healthcheck", func(t *testing.T) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "config.yml")
		writeFile(t, cfg, "handlers:\n  Thredds:\n    active: true\nsync_permissions: {}\n")
		// The shape of birdhouse-deploy's cowbird.ini, which the component keeps.
		ini := filepath.Join(dir, "cowbird.ini")
		writeFile(t, ini, `[composite:main]
use = egg:Paste#urlmap
/ = cowbird_app

[app:cowbird_app]
use = egg:cowbird
filter-with = urlprefix
pyramid.includes =
mongo_uri = mongodb://cowbird-mongodb:27017/cowbird
cowbird.port =
cowbird.url = https://birdhouse.example.org/cowbird

[server:main]
use = egg:gunicorn#main
port = 7000

[logger_cowbird]
level = INFO
handlers =

[handler_console]
class = StreamHandler
args = (sys.stdout,)

[formatter_generic]
format = [%(asctime)s] %(levelname)-10.10s [%(threadName)s][%(name)s] %(message)s
`)
		dataDir := filepath.Join(dir, "state")
		d := startDaemon(t, bin, cfg, dataDir, "COWBIRD_INI_FILE_PATH="+ini)
		url := "http://" + d.addr + "/"

		if out, code := runBin(t, bin, nil, "healthcheck", "--url", url); code != 0 {
			t.Errorf("healthcheck of the running daemon: exit %d, want 0\n%s", code, out)
		}
		home := get(t, url)
		if !strings.Contains(home, `"documentation":"https://birdhouse.example.org/cowbird/api"`) {
			t.Errorf("GET / does not use cowbird.url of the INI file:\n%s", home)
		}
		if check := canarieResponseCheck(t); !check.MatchString(home) {
			t.Errorf("GET / fails the CanarieAPI check %s:\n%s", check, home)
		}
		metrics := get(t, url+"metrics")
		if !strings.Contains(metrics, "cowbird_http_requests_total") {
			t.Errorf("/metrics lacks cowbird_http_requests_total:\n%s", metrics)
		}
		postMagpieWebhooks(t, "http://"+d.addr)
		if _, err := os.Stat(filepath.Join(dataDir, "cowbird.db")); err != nil {
			t.Errorf("state database not in --data-dir: %v", err)
		}

		if code := d.stop(t); code != 0 {
			t.Errorf("serve exit code after SIGTERM: %d, want 0\n%s", code, d.log())
		}
		if out, code := runBin(t, bin, nil, "healthcheck", "--url", url, "--timeout", "5s"); code != 1 {
			t.Errorf("healthcheck of a stopped daemon: exit %d, want 1\n%s", code, out)
		}

		// Back up the stopped daemon's state, restore it elsewhere, and
		// start a daemon on it: it is ready with no event left to do.
		backup := filepath.Join(dir, "backup", "cowbird.db")
		if out, code := runBin(t, bin, nil, "backup", "--data-dir", dataDir, backup); code != 0 {
			t.Fatalf("backup: exit %d\n%s", code, out)
		}
		restored := filepath.Join(dir, "restored")
		if out, code := runBin(t, bin, nil, "restore", "--data-dir", restored, backup); code != 0 || !strings.Contains(out, "events=") {
			t.Fatalf("restore: exit %d\n%s", code, out)
		}
		d = startDaemon(t, bin, cfg, restored, "COWBIRD_INI_FILE_PATH="+ini)
		base := "http://" + d.addr + "/"
		if out, code := runBin(t, bin, nil, "healthcheck", "--url", base+"readyz"); code != 0 {
			t.Errorf("readiness of the daemon on the restored state: exit %d\n%s", code, out)
		}
		if m := get(t, base+"metrics"); !strings.Contains(m, "\ncowbird_journal_pending_events 0\n") {
			t.Errorf("the daemon on the restored state has pending events:\n%s", grepLines(m, "cowbird_journal"))
		}
		if out, code := runBin(t, bin, nil, "restore", "--data-dir", restored, backup); code != 1 || !strings.Contains(out, "stop it first") {
			t.Errorf("restore under the running daemon: exit %d, want 1\n%s", code, out)
		}
		if code := d.stop(t); code != 0 {
			t.Errorf("serve on the restored state: exit code %d\n%s", code, d.log())
		}
	})
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// runBin runs the binary with a clean environment plus env and returns
// its combined output and exit code.
func runBin(t *testing.T, bin string, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{}, env...) // never nil: nil would inherit ours
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("cowbird %s: %v", strings.Join(args, " "), err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// daemon is a running `cowbird serve`.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed when the process has exited
	logs *bytes.Buffer // stdout (where logs go), complete once done is closed
}

func (d *daemon) log() string {
	<-d.done
	return d.logs.String()
}

// startDaemon runs serve on 127.0.0.1:0 with JSON logs and env, and waits for the
// "cowbird listening" record, which carries the bound address.
func startDaemon(t *testing.T, bin, cfg, dataDir string, env ...string) *daemon {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", cfg, "--addr", "127.0.0.1:0", "--data-dir", dataDir)
	cmd.Env = append([]string{"COWBIRD_LOG_FORMAT=json"}, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, done: make(chan struct{}), logs: &bytes.Buffer{}}
	addr := make(chan string, 1)
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.logs.Write(append(sc.Bytes(), '\n'))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "cowbird listening" {
				addr <- rec.Addr
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-d.done
	})
	select {
	case d.addr = <-addr:
	case <-d.done:
		t.Fatalf("serve exited before listening: %v\n%s", cmd.ProcessState, d.logs)
	case <-time.After(hangGuard):
		t.Fatal("serve did not log \"cowbird listening\"")
	}
	return d
}

// stop sends SIGTERM and returns the exit code.
func (d *daemon) stop(t *testing.T) int {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(hangGuard):
		t.Fatal("serve did not exit after SIGTERM")
	}
	return d.cmd.ProcessState.ExitCode()
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, err %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// magpieParams are sample values of Magpie's webhook template parameters.
var magpieParams = map[string]any{
	"user.name": "alice", "group.name": "users", "callback_url": "http://magpie:2001/tmp/0c4e7c1e",
	"service.name": "thredds", "service.type": "thredds", "resource.id": 12, "resource.name": "birdhouse",
	"permission.name": "read", "permission.access": "allow", "permission.scope": "recursive",
}

var magpieParam = regexp.MustCompile(`^\{\{([\w.]+)\}\}$`)

// postMagpieWebhooks sends every webhook of the Magpie config template the
// way Magpie would (a string that is exactly {{param}} takes the value with
// its type) to the daemon at base, and expects 200.
func postMagpieWebhooks(t *testing.T, base string) {
	t.Helper()
	var cfg struct {
		Webhooks []struct {
			Name, Action, Method, URL string
			Payload                   map[string]any
		}
	}
	readYAML(t, filepath.Join("birdhouse", "config", "magpie", "config.yml.template"), &cfg)
	actions := map[string]bool{}
	for _, w := range cfg.Webhooks {
		actions[w.Action] = true
		path, ok := strings.CutPrefix(w.URL, "http://cowbird:7000/")
		if !ok || w.Method != http.MethodPost {
			t.Errorf("webhook %s: %s %s, want POST http://cowbird:7000/...", w.Name, w.Method, w.URL)
			continue
		}
		body := map[string]any{}
		for k, v := range w.Payload {
			if s, ok := v.(string); ok {
				if m := magpieParam.FindStringSubmatch(s); m != nil {
					p, known := magpieParams[m[1]]
					if !known {
						t.Errorf("webhook %s: %s: unknown template parameter %s", w.Name, k, s)
					}
					v = p
				}
			}
			body[k] = v
		}
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(base+"/"+path, "application/json", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("webhook %s: POST /%s %s: status %d\n%s", w.Name, path, data, resp.StatusCode, answer)
		}
	}
	for _, a := range []string{"create_user", "delete_user", "create_user_permission", "delete_user_permission",
		"create_group_permission", "delete_group_permission"} {
		if !actions[a] {
			t.Errorf("Magpie config declares no webhook for %s", a)
		}
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestSystemdUnit checks that the unit's data dir and managed trees are
// writable under ProtectSystem=strict.
func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("systemd", "cowbird.service"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && !strings.HasPrefix(k, "#") {
			keys[k] = append(keys[k], v)
		}
	}
	for k, want := range map[string]string{"Type": "simple", "ProtectSystem": "strict", "NoNewPrivileges": "yes"} {
		if !slices.Equal(keys[k], []string{want}) {
			t.Errorf("%s=%q, want %s", k, keys[k], want)
		}
	}
	if len(keys["ExecStart"]) != 1 {
		t.Fatalf("ExecStart %q, want one", keys["ExecStart"])
	}
	argv := strings.Fields(keys["ExecStart"][0])
	dataDir, ok := flagValue(argv, "--data-dir")
	if len(argv) < 2 || argv[1] != "serve" || !ok {
		t.Fatalf("ExecStart %q, want BINARY serve --data-dir DIR", argv)
	}
	writable := strings.Fields(strings.Join(keys["ReadWritePaths"], " "))
	for _, sd := range keys["StateDirectory"] {
		writable = append(writable, "/var/lib/"+sd)
	}
	if !slices.Contains(writable, dataDir) {
		t.Errorf("data dir %s is not writable: ReadWritePaths/StateDirectory give %q", dataDir, writable)
	}
	if !slices.Contains(writable, "/data") {
		t.Errorf("the shared root /data is not in ReadWritePaths %q", writable)
	}
}
