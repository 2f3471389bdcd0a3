package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cowbird-go/cowbird/config"
)

// The swap test: deploy/birdhouse put in place of birdhouse-deploy's
// components/cowbird, checked the way bird-house would read, render and
// compose it, against the facts of testdata/birdhouse-deploy.yml.

// component is this directory's path in birdhouse-deploy.
const component = "./components/cowbird"

// componentDir is the component in this repository.
var componentDir = filepath.Join("birdhouse")

// kv is one variable assignment.
type kv struct{ Name, Value string }

// envList keeps variable assignments in file order (delayed expansion
// depends on it).
type envList []kv

func (e *envList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping of variables", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		*e = append(*e, kv{n.Content[i].Value, n.Content[i+1].Value})
	}
	return nil
}

// upstreamComponent is what the facts say about one component.
type upstreamComponent struct {
	Env          envList
	Vars         []string
	OptionalVars []string `yaml:"optional_vars"`
	Dependencies []string
	Services     []string
	// Compose is a fragment of the component's own compose file.
	Compose map[string]any
	// Overlays are its config/<other>/docker-compose-extra.yml files.
	Overlays map[string]map[string]any
}

type scenario struct {
	ExtraConfDirs []string `yaml:"extra_conf_dirs"`
	EnvLocal      envList  `yaml:"env_local"`
}

// birdhouseFacts is testdata/birdhouse-deploy.yml.
type birdhouseFacts struct {
	Version       string
	UpstreamFiles []string `yaml:"upstream_files"`
	Root          struct {
		Env               envList
		Vars              []string
		OptionalVars      []string `yaml:"optional_vars"`
		DefaultConfDirs   []string `yaml:"default_conf_dirs"`
		ComposeCommandEnv envList  `yaml:"compose_command_env"`
	}
	Components map[string]upstreamComponent
	Scenarios  map[string]scenario
}

func loadFacts(t *testing.T) *birdhouseFacts {
	t.Helper()
	var f birdhouseFacts
	readYAML(t, filepath.Join("testdata", "birdhouse-deploy.yml"), &f)
	if len(f.Scenarios) == 0 || len(f.Components) == 0 {
		t.Fatal("testdata/birdhouse-deploy.yml: no scenarios or components")
	}
	return &f
}

// stack is the component deployed in a scenario: a compose directory with
// the component in place, the environment bird-house computed, and the
// rendered templates.
type stack struct {
	facts    *birdhouseFacts
	dir      string            // COMPOSE_DIR
	confDirs []string          // ALL_CONF_DIRS, in load order
	env      map[string]string // exported variables after delayed evaluation
	vars     []string          // names in VARS
	optional []string          // names in OPTIONAL_VARS
	rendered map[string]string // rendered files of the component, relative path -> content
}

// enabled reports whether the component at dir (a path or a base name) is
// enabled.
func (s *stack) enabled(name string) bool {
	return slices.ContainsFunc(s.confDirs, func(d string) bool { return d == name || path.Base(d) == name })
}

// ourDependencies are the COMPONENT_DEPENDENCIES of the component's default.env.
func ourDependencies(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("sh", "-c", `COMPONENT_DEPENDENCIES=; . ./default.env; echo $COMPONENT_DEPENDENCIES`)
	cmd.Dir = componentDir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "COMPOSE_DIR=/nonexistent"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sourcing default.env: %v", err)
	}
	return strings.Fields(string(out))
}

// loadOrder computes ALL_CONF_DIRS: the default then the extra conf dirs,
// each after its dependencies, each once.
func (f *birdhouseFacts) loadOrder(t *testing.T, sc scenario) []string {
	t.Helper()
	var order []string
	seen := map[string]bool{}
	var add func(dir string)
	add = func(dir string) {
		if seen[dir] {
			return
		}
		seen[dir] = true
		var deps []string
		if dir == component {
			deps = ourDependencies(t)
		} else if c, ok := f.Components[dir]; ok {
			deps = c.Dependencies
		} else {
			t.Fatalf("component %s is not in testdata/birdhouse-deploy.yml", dir)
		}
		for _, d := range deps {
			add(d)
		}
		order = append(order, dir)
	}
	for _, d := range append(slices.Clone(f.Root.DefaultConfDirs), sc.ExtraConfDirs...) {
		add(d)
	}
	return order
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// deployStack copies the component into a compose directory, computes the
// environment with sh as bird-house does, and renders the templates.
func deployStack(t *testing.T, f *birdhouseFacts, sc scenario) *stack {
	t.Helper()
	s := &stack{facts: f, dir: t.TempDir(), rendered: map[string]string{}}
	s.confDirs = f.loadOrder(t, sc)
	if err := os.CopyFS(filepath.Join(s.dir, "components", "cowbird"), os.DirFS(componentDir)); err != nil {
		t.Fatal(err)
	}

	var sh strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&sh, format+"\n", a...) }
	export := func(env envList) {
		for _, v := range env {
			line("export %s=%s", v.Name, shq(v.Value))
			if strings.Contains(v.Value, "$") {
				line(`DELAYED_EVAL="$DELAYED_EVAL %s"`, v.Name)
			}
		}
	}
	list := func(name string, vars []string) {
		for _, v := range vars {
			line(`%s="$%[1]s \$%s"`, name, v)
		}
	}
	line("set -e")
	line("COMPOSE_DIR=%s; export COMPOSE_DIR; cd \"$COMPOSE_DIR\"", shq(s.dir))
	line("VARS=; OPTIONAL_VARS=; DELAYED_EVAL=")
	export(f.Root.Env)
	list("VARS", f.Root.Vars)
	list("OPTIONAL_VARS", f.Root.OptionalVars)
	export(sc.EnvLocal)
	for _, dir := range s.confDirs {
		if dir == component {
			line(". %s/default.env", dir)
			continue
		}
		c := f.Components[dir]
		export(c.Env)
		list("VARS", c.Vars)
		list("OPTIONAL_VARS", c.OptionalVars)
	}
	export(sc.EnvLocal)
	// Delayed evaluation, then the check of VARS, as read-configs does.
	line(`for _n in $DELAYED_EVAL; do eval "_raw=\${$_n}"; _v=$(eval "echo \"$_raw\""); export "$_n=$_v"; done`)
	line(`for _v in $VARS; do [ -n "$(eval "echo $_v")" ] || { echo "required variable $_v is empty" >&2; exit 3; }; done`)
	line(`printf '%%s' "$VARS" > vars.out; printf '%%s' "$OPTIONAL_VARS" > optional.out; env -0 > env.out`)

	cmd := exec.Command("sh", "-c", sh.String())
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bird-house configuration: %v\n%s\nscript:\n%s", err, out, sh.String())
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(s.dir, name))
		return string(b)
	}
	names := func(list string) []string {
		var out []string
		for _, w := range strings.Fields(list) {
			out = append(out, strings.Trim(w, "${}"))
		}
		return out
	}
	s.vars, s.optional = names(read("vars.out")), names(read("optional.out"))
	s.env = map[string]string{}
	for _, e := range strings.Split(read("env.out"), "\x00") {
		if k, v, ok := strings.Cut(e, "="); ok {
			s.env[k] = v
		}
	}
	delete(s.env, "PWD")
	delete(s.env, "OLDPWD")
	delete(s.env, "SHLVL")
	delete(s.env, "_")

	// Templates, as birdhouse-compose.sh renders them.
	root := filepath.Join(s.dir, "components", "cowbird")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".template") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out := envsubst(envsubst(string(b), s.vars, s.env), s.optional, s.env)
		dst := strings.TrimSuffix(p, ".template")
		rel, _ := filepath.Rel(root, dst)
		s.rendered[filepath.ToSlash(rel)] = out
		return os.WriteFile(dst, []byte(out), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var shellRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// envsubst replaces $NAME and ${NAME} of the listed names with their value
// in env (empty when unset), and leaves every other reference, as GNU
// envsubst with a SHELL-FORMAT argument does.
func envsubst(s string, names []string, env map[string]string) string {
	return shellRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := shellRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		if !slices.Contains(names, name) {
			return ref
		}
		return env[name]
	})
}

var composeRef = regexp.MustCompile(`\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|[A-Za-z_][A-Za-z0-9_]*)`)

// interpolate does docker compose's variable interpolation of s with env,
// and returns the names used without a default that are unset.
func interpolate(s string, env map[string]string) (string, []string) {
	var unset []string
	out := composeRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := composeRef.FindStringSubmatch(ref)
		if m[1] == "$" {
			return "$"
		}
		name, op, arg := m[2], m[3], m[4]
		if name == "" {
			name = m[1]
		}
		v, ok := env[name]
		switch op {
		case ":-":
			if v == "" {
				return arg
			}
		case "-":
			if !ok {
				return arg
			}
		case ":?", "?":
			if !ok || (op == ":?" && v == "") {
				unset = append(unset, name+" ("+arg+")")
			}
		default:
			if !ok {
				unset = append(unset, name)
			}
		}
		return v
	})
	return out, unset
}

// interpolateTree interpolates every string of a parsed YAML document.
func interpolateTree(v any, env map[string]string, unset *[]string) any {
	switch x := v.(type) {
	case string:
		s, u := interpolate(x, env)
		*unset = append(*unset, u...)
		return s
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = interpolateTree(e, env, unset)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = interpolateTree(e, env, unset)
		}
		return out
	}
	return v
}

// composeFile is one file of the compose file list.
type composeFile struct {
	name string // e.g. ./components/cowbird/config/magpie/docker-compose-extra.yml
	ours bool
	doc  map[string]any // interpolated
}

// composeFiles builds the compose file list of the stack, as
// create_compose_conf_list does, and interpolates each file.
func (s *stack) composeFiles(t *testing.T) []composeFile {
	t.Helper()
	cmdEnv := maps.Clone(s.env)
	for _, v := range s.facts.Root.ComposeCommandEnv {
		cmdEnv[v.Name], _ = interpolate(v.Value, s.env)
	}
	// Files are interpolated when they enter the list: an overlay of a
	// component that is not enabled is never read by docker compose.
	load := func(f composeFile) composeFile {
		var unset []string
		f.doc, _ = interpolateTree(f.doc, cmdEnv, &unset).(map[string]any)
		if f.ours && len(unset) > 0 {
			t.Errorf("%s: unset variables %q (docker compose would use empty strings)", f.name, unset)
		}
		return f
	}
	ourFile := func(rel string) composeFile {
		var doc map[string]any
		readYAML(t, filepath.Join(s.dir, "components", "cowbird", rel), &doc)
		return composeFile{name: component + "/" + rel, ours: true, doc: doc}
	}
	files := []composeFile{{name: "docker-compose.yml", doc: map[string]any{"services": map[string]any{}}}}
	var loaded []string
	pending := map[string][]composeFile{}
	for _, dir := range s.confDirs {
		base := path.Base(dir)
		overlays := map[string]composeFile{}
		if dir == component {
			files = append(files, load(ourFile("docker-compose-extra.yml")))
			matches, _ := filepath.Glob(filepath.Join(s.dir, "components", "cowbird", "config", "*", "docker-compose-extra.yml"))
			for _, m := range matches {
				other := filepath.Base(filepath.Dir(m))
				overlays[other] = ourFile(path.Join("config", other, "docker-compose-extra.yml"))
			}
		} else {
			c := s.facts.Components[dir]
			services := map[string]any{}
			for _, name := range c.Services {
				services[name] = map[string]any{"image": "upstream" + strings.TrimPrefix(dir, ".") + ":" + name}
			}
			if len(services) > 0 {
				files = append(files, load(composeFile{name: dir + "/docker-compose-extra.yml", doc: map[string]any{"services": services}}))
			}
			if c.Compose != nil {
				files = append(files, load(composeFile{name: dir + "/docker-compose-extra.yml (fragment)", doc: c.Compose}))
			}
			for other, frag := range c.Overlays {
				overlays[other] = composeFile{name: dir + "/config/" + other + "/docker-compose-extra.yml", doc: frag}
			}
		}
		loaded = append(loaded, base)
		for _, f := range pending[base] {
			files = append(files, load(f))
		}
		delete(pending, base)
		for _, other := range slices.Sorted(maps.Keys(overlays)) {
			if slices.Contains(loaded, other) {
				files = append(files, load(overlays[other]))
			} else {
				pending[other] = append(pending[other], overlays[other])
			}
		}
	}
	return files
}

// mergeServices merges the services of the files as docker compose does:
// mappings merge key by key, sequences append, scalars are replaced.
func mergeServices(files []composeFile) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, f := range files {
		services, _ := f.doc["services"].(map[string]any)
		for name, v := range services {
			svc, _ := v.(map[string]any)
			if out[name] == nil {
				out[name] = map[string]any{}
			}
			mergeMap(out[name], svc)
		}
	}
	return out
}

func mergeMap(dst, src map[string]any) {
	for k, v := range src {
		switch sv := v.(type) {
		case map[string]any:
			dv, ok := dst[k].(map[string]any)
			if !ok {
				dv = map[string]any{}
				dst[k] = dv
			}
			mergeMap(dv, sv)
		case []any:
			dv, _ := dst[k].([]any)
			dst[k] = append(slices.Clone(dv), sv...)
		default:
			dst[k] = v
		}
	}
}

// names lists the service names of a depends_on or links value.
func names(v any) []string {
	var out []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			name, _, _ := strings.Cut(fmt.Sprint(e), ":")
			out = append(out, name)
		}
	case map[string]any:
		out = slices.Sorted(maps.Keys(x))
	}
	return out
}

// mount is one short-syntax volume.
type mount struct{ src, dst, mode string }

func parseMount(t *testing.T, where string, v any) mount {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Errorf("%s: volume %v is not in short syntax", where, v)
		return mount{}
	}
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		t.Errorf("%s: volume %q is not SRC:DST[:MODE]", where, s)
		return mount{}
	}
	m := mount{src: parts[0], dst: parts[1]}
	if len(parts) == 3 {
		m.mode = parts[2]
	}
	return m
}

// hostPath resolves the source of a bind mount of the compose project.
func (s *stack) hostPath(src string) string {
	if strings.HasPrefix(src, "./") {
		return filepath.Join(s.dir, filepath.FromSlash(src))
	}
	return src
}

// checkOurMounts checks the volumes and env files our compose files add.
func (s *stack) checkOurMounts(t *testing.T, files []composeFile) {
	t.Helper()
	for _, f := range files {
		if !f.ours {
			continue
		}
		services, _ := f.doc["services"].(map[string]any)
		for name, v := range services {
			svc, _ := v.(map[string]any)
			where := f.name + ": " + name
			vols, _ := svc["volumes"].([]any)
			for _, v := range vols {
				m := parseMount(t, where, v)
				switch {
				case m.src == "":
					t.Errorf("%s: volume %v has an empty source", where, v)
				case !strings.HasPrefix(m.dst, "/"):
					t.Errorf("%s: volume %v: the target is not absolute", where, v)
				case strings.HasPrefix(m.src, "./"):
					if !strings.HasPrefix(m.src, component+"/") {
						t.Errorf("%s: volume %v mounts a file of another component", where, v)
					} else if _, err := os.Stat(s.hostPath(m.src)); err != nil {
						t.Errorf("%s: volume %v: the component has no such file: %v", where, v, err)
					}
				case !strings.HasPrefix(m.src, "/"):
					t.Errorf("%s: volume %v: named volumes are not used by this component", where, v)
				}
				if m.mode != "" && m.mode != "ro" && m.mode != "rw" {
					t.Errorf("%s: volume %v: mode %q", where, v, m.mode)
				}
			}
			if _, ok := svc["env_file"]; ok {
				t.Errorf("%s: env_file: the daemon needs no other component's credentials", where)
			}
		}
	}
}

// containerEnv is the environment of a merged service.
func containerEnv(t *testing.T, svc map[string]any) map[string]string {
	t.Helper()
	out := map[string]string{}
	env, ok := svc["environment"].(map[string]any)
	if !ok {
		t.Fatalf("environment %v is not a mapping", svc["environment"])
	}
	for k, v := range env {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// TestBirdhouseSwap deploys the component in each scenario of the facts
// and checks what bird-house and docker compose would do with it.
func TestBirdhouseSwap(t *testing.T) {
	facts := loadFacts(t)
	bin := builtBinary(t)
	imageBin := finalImageBinary(t)
	for _, name := range slices.Sorted(maps.Keys(facts.Scenarios)) {
		t.Run(name, func(t *testing.T) {
			s := deployStack(t, facts, facts.Scenarios[name])
			t.Logf("ALL_CONF_DIRS: %s", strings.Join(s.confDirs, " "))
			files := s.composeFiles(t)
			s.checkOurMounts(t, files)
			services := mergeServices(files)

			for _, gone := range []string{"cowbird-worker", "cowbird-mongodb"} {
				if _, ok := services[gone]; ok {
					t.Errorf("service %s is still defined", gone)
				}
			}
			for _, sn := range slices.Sorted(maps.Keys(services)) {
				svc := services[sn]
				if svc["image"] == nil && svc["build"] == nil {
					t.Errorf("service %s has neither an image nor a build context (overlay of a missing service?)", sn)
				}
				for _, key := range []string{"depends_on", "links"} {
					for _, dep := range names(svc[key]) {
						if services[dep] == nil {
							t.Errorf("service %s: %s names %s, which is not defined", sn, key, dep)
						}
					}
				}
				for _, n := range names(svc["networks"]) {
					if n != "default" {
						t.Errorf("service %s: network %s is not defined by the stack", sn, n)
					}
				}
			}

			cb := services["cowbird"]
			if cb == nil {
				t.Fatal("no cowbird service")
			}
			if want := s.env["COWBIRD_DOCKER"] + ":" + s.env["COWBIRD_VERSION"]; cb["image"] != want {
				t.Errorf("cowbird image %v, want %s", cb["image"], want)
			}
			// Only the proxy and the compose network reach cowbird: its
			// webhooks and resync route answer without a token, as upstream.
			if ports, ok := cb["ports"]; ok {
				t.Errorf("cowbird publishes ports %v on the host", ports)
			}
			hc, _ := cb["healthcheck"].(map[string]any)
			test, _ := hc["test"].([]any)
			if len(test) != 3 || test[0] != "CMD" || test[1] != imageBin || test[2] != "healthcheck" {
				t.Errorf("healthcheck test %v, want [CMD %s healthcheck] (no shell in the image)", test, imageBin)
			}
			if out, code := runBin(t, bin, nil, "healthcheck", "--help"); code != 0 {
				t.Errorf("the binary has no healthcheck command: exit %d\n%s", code, out)
			}

			env := containerEnv(t, cb)
			mounts := map[string]mount{}
			vols, _ := cb["volumes"].([]any)
			for _, v := range vols {
				m := parseMount(t, "cowbird", v)
				mounts[m.dst] = m
			}
			shared := s.env["BIRDHOUSE_DATA_PERSIST_SHARED_ROOT"]
			if m := mounts[shared]; m.src != shared {
				t.Errorf("the shared root %s is not mounted at its own path: %v", shared, mounts)
			}
			for _, k := range []string{"WORKSPACE_DIR", "WPS_OUTPUTS_DIR"} {
				if !strings.HasPrefix(env[k], shared+"/") {
					t.Errorf("%s=%s is not under the shared-root mount %s (hardlinks need one mount)", k, env[k], shared)
				}
			}
			if m := mounts["/var/lib/cowbird"]; m.src != s.env["BIRDHOUSE_DATA_PERSIST_ROOT"]+"/cowbird_persist" {
				t.Errorf("state directory mounted from %q, want %s/cowbird_persist", m.src, s.env["BIRDHOUSE_DATA_PERSIST_ROOT"])
			}
			hostFile := func(key string) string {
				m, ok := mounts[env[key]]
				if !ok {
					t.Fatalf("%s=%s is not mounted", key, env[key])
				}
				return s.hostPath(m.src)
			}
			cfgFile, iniFile := hostFile("COWBIRD_CONFIG_PATH"), hostFile("COWBIRD_INI_FILE_PATH")

			// What stays of ${...} in the rendered files: in config.yml,
			// only what cowbird expands from its environment or what
			// belongs to a component that is not enabled.
			for rel, content := range s.rendered {
				for _, m := range regexp.MustCompile(`\$\{(\w+)\}`).FindAllStringSubmatch(content, -1) {
					v := m[1]
					_, runtime := env[v]
					if rel == "config/cowbird/config.yml" && (runtime || !s.definedByEnabled(v)) {
						continue
					}
					t.Errorf("%s: ${%s} is left unrendered", rel, v)
				}
			}

			// The real configuration checks, on the rendered files, with the
			// container's environment.
			cenv := []string{}
			for k, v := range env {
				cenv = append(cenv, k+"="+v)
			}
			out, code := runBin(t, bin, cenv, "config", "validate", cfgFile)
			if code != 0 {
				t.Errorf("config validate of the rendered config.yml: exit %d\n%s", code, out)
			} else if strings.Contains(out, "level=warning") {
				t.Logf("config validate warns:\n%s", out)
			}
			settings, err := config.LoadSettings(func(k string) (string, bool) {
				if k == "COWBIRD_INI_FILE_PATH" {
					return iniFile, true
				}
				v, ok := env[k]
				return v, ok
			})
			if err != nil {
				t.Errorf("settings from the rendered cowbird.ini and the environment: %v", err)
			} else if want := "https://" + s.env["BIRDHOUSE_FQDN"] + "/cowbird"; settings.URL != want || settings.UserUID != 1000 {
				t.Errorf("settings URL %q, user uid %d; want %s, 1000", settings.URL, settings.UserUID, want)
			}

			s.checkRenderedFiles(t)
			if readme := s.env["JUPYTERHUB_README"]; !strings.HasPrefix(readme, s.dir) {
				t.Errorf("JUPYTERHUB_README=%s is not in the compose directory", readme)
			} else if b, err := os.ReadFile(readme); err != nil || !json.Valid(b) {
				t.Errorf("JUPYTERHUB_README: %v (a missing file becomes a directory in JupyterHub's mount)", err)
			}
			if s.enabled("jupyterhub") {
				if jenv := containerEnv(t, services["jupyterhub"]); jenv["WORKSPACE_DIR"] != env["WORKSPACE_DIR"] {
					t.Errorf("jupyterhub WORKSPACE_DIR=%s, cowbird's %s", jenv["WORKSPACE_DIR"], env["WORKSPACE_DIR"])
				}
			}
		})
	}
}

// definedByEnabled reports whether an enabled component (or bird-house
// itself, or this component) defines variable v.
func (s *stack) definedByEnabled(v string) bool {
	if _, ok := s.env[v]; ok {
		return true
	}
	for dir, c := range s.facts.Components {
		if slices.Contains(c.Vars, v) || slices.Contains(c.OptionalVars, v) || slices.ContainsFunc(c.Env, func(e kv) bool { return e.Name == v }) {
			return s.enabled(dir)
		}
	}
	return true // unknown: it should have been rendered
}

// checkRenderedFiles checks the files rendered from the templates.
func (s *stack) checkRenderedFiles(t *testing.T) {
	t.Helper()
	var svc struct {
		Name, Version string
		Links         []struct{ Rel, Href string }
	}
	if err := json.Unmarshal([]byte(s.rendered["service-config.json"]), &svc); err != nil {
		t.Fatalf("service-config.json: %v", err)
	}
	if svc.Name != "cowbird" || svc.Version != s.env["COWBIRD_VERSION"] {
		t.Errorf("service-config.json: name %q version %q", svc.Name, svc.Version)
	}
	for _, l := range svc.Links {
		if !strings.HasPrefix(l.Href, "https://") && l.Rel != "service-meta" {
			t.Errorf("service-config.json: link %s %q is not an https URL", l.Rel, l.Href)
		}
	}
	canarie := s.rendered["config/canarie-api/canarie_api_monitoring.py"]
	for name, content := range map[string]string{"service-config.json": s.rendered["service-config.json"], "canarie_api_monitoring.py": canarie} {
		if !strings.Contains(content, "github.com/cowbird-go/cowbird") {
			t.Errorf("%s does not point at this project", name)
		}
		for _, python := range []string{"Ouranosinc", "ouranosinc", "pavics-cowbird", "pavics/cowbird"} {
			if strings.Contains(content, python) {
				t.Errorf("%s points at the Python Cowbird (%s)", name, python)
			}
		}
	}
	if !strings.Contains(canarie, `get_release_time_from_repo_tag("github", "cowbird-go/cowbird", "`+s.env["COWBIRD_VERSION"]+`")`) {
		t.Error("canarie_api_monitoring.py does not take the release time of this project's tag")
	}
	var magpie struct {
		Providers map[string]struct{ URL string }
	}
	if err := yaml.Unmarshal([]byte(s.rendered["config/magpie/config.yml"]), &magpie); err != nil || magpie.Providers["cowbird"].URL != "http://cowbird:7000" {
		t.Errorf("config/magpie/config.yml: provider %v, %v", magpie.Providers, err)
	}
	nginx := s.rendered["config/proxy/conf.extra-service.d/cowbird.conf"]
	if want := "proxy_pass https://" + s.env["BIRDHOUSE_FQDN"] + s.env["TWITCHER_PROTECTED_PATH"] + "/cowbird;"; !strings.Contains(nginx, want) {
		t.Errorf("cowbird.conf lacks %q:\n%s", want, nginx)
	}
	if !strings.Contains(nginx, "$proxy_add_x_forwarded_for") {
		t.Error("cowbird.conf: nginx's own variables were substituted")
	}
}

// finalImageBinary is the path of the binary in the image.
func finalImageBinary(t *testing.T) string {
	t.Helper()
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	final := stages[len(stages)-1]
	for _, in := range final.find("ENTRYPOINT") {
		if argv := execForm(t, in, in.args); len(argv) == 1 {
			return argv[0]
		}
	}
	t.Fatal("Dockerfile: the final stage has no ENTRYPOINT [binary]")
	return ""
}

// TestBirdhouseComponentFiles checks the component as a set of files: one
// counterpart for each upstream file, documented; generated files ignored;
// nothing of the Python version's services left.
func TestBirdhouseComponentFiles(t *testing.T) {
	facts := loadFacts(t)
	var files []string
	err := filepath.WalkDir(componentDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(componentDir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// The README's table: upstream file | counterpart | what changes.
	readme, err := os.ReadFile(filepath.Join(componentDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (`[^|]+`|—) \\| ([^|]+) \\| ([^|]+) \\|$")
	code := regexp.MustCompile("`([^`]+)`")
	upstream := map[string]string{} // upstream file -> counterpart cell
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		up := strings.Trim(m[1], "`")
		cell := strings.TrimSpace(m[2])
		if up != "—" {
			upstream[up] = cell
		}
		var ours []string
		switch {
		case cell == "same path":
			ours = []string{up}
		case cell != "—":
			for _, c := range code.FindAllStringSubmatch(cell, -1) {
				p := c[1]
				if !strings.Contains(p, "/") && len(ours) > 0 {
					p = path.Join(path.Dir(ours[0]), p) // "dir/a, b": b beside a
				}
				ours = append(ours, p)
			}
		}
		for _, o := range ours {
			documented[o] = true
			if !slices.Contains(files, o) {
				t.Errorf("README: counterpart %s of %s does not exist", o, up)
			}
		}
	}
	for _, up := range facts.UpstreamFiles {
		if _, ok := upstream[up]; !ok {
			t.Errorf("README: no row for the upstream file %s", up)
		}
	}
	for _, f := range files {
		if !documented[f] {
			t.Errorf("README: %s is not in the table", f)
		}
	}

	// Every rendered file is ignored by git.
	ignore, err := os.ReadFile(filepath.Join(componentDir, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	ignored := strings.Fields(string(ignore))
	for _, f := range files {
		if out, ok := strings.CutSuffix(f, ".template"); ok && !slices.Contains(ignored, out) {
			t.Errorf(".gitignore does not list %s (rendered from %s)", out, f)
		}
	}

	// Nothing of the Python version's services, images or database.
	gone := regexp.MustCompile(`cowbird-worker|cowbird-mongodb|COWBIRD_MONGODB|mongo:|-webservice`)
	for _, f := range files {
		if f == "README.md" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(componentDir, f))
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			if gone.MatchString(l) {
				t.Errorf("%s:%d names the Python version: %s", f, i+1, strings.TrimSpace(l))
			}
		}
	}
	// The overlays are for components bird-house has.
	for _, f := range files {
		if parts := strings.Split(f, "/"); len(parts) == 3 && parts[0] == "config" && parts[2] == "docker-compose-extra.yml" {
			if !slices.ContainsFunc(slices.Collect(maps.Keys(facts.Components)), func(d string) bool { return path.Base(d) == parts[1] }) {
				t.Errorf("%s: bird-house has no component %s, the overlay is never loaded", f, parts[1])
			}
		}
	}
}

// TestShippedDocs checks what goes to operators with the component: no
// reference to files that are not shipped, no unfinished notes, and the
// image that docs/install.md builds is the one default.env names.
func TestShippedDocs(t *testing.T) {
	install, err := os.ReadFile(filepath.Join(root, "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string][]byte{"docs/install.md": install}
	err = filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			texts["deploy/"+filepath.ToSlash(p)] = b
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Spelled in two parts so that this file does not match itself.
	forbidden := []string{"../" + "shared", "being " + "implemented"}
	for _, name := range slices.Sorted(maps.Keys(texts)) {
		for _, f := range forbidden {
			if bytes.Contains(texts[name], []byte(f)) {
				t.Errorf("%s mentions %q", name, f)
			}
		}
	}

	facts := loadFacts(t)
	s := deployStack(t, facts, facts.Scenarios["default"])
	image := s.env["COWBIRD_IMAGE"]
	build := regexp.MustCompile(`docker build [^\n]*-t (\S+)`).FindAllStringSubmatch(string(install), -1)
	if len(build) == 0 {
		t.Fatal("docs/install.md has no docker build -t")
	}
	for _, m := range build {
		if tag := m[1]; tag != image && !strings.Contains(tag, "$") {
			t.Errorf("docs/install.md builds %s, default.env names %s", tag, image)
		}
	}
	if !bytes.Contains(install, []byte(image)) {
		t.Errorf("docs/install.md never names the image %s of default.env", image)
	}
}

// canarieResponseCheck is the response check of the CanarieAPI monitoring
// entry, as a Go regexp (the same syntax for this expression).
func canarieResponseCheck(t *testing.T) *regexp.Regexp {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(componentDir, "config", "canarie-api", "canarie_api_monitoring.py.template"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`'text':\s*r?'([^']+)'`).FindSubmatch(b)
	if m == nil {
		t.Fatal("canarie_api_monitoring.py.template: no response text check")
	}
	return regexp.MustCompile(string(m[1]))
}
