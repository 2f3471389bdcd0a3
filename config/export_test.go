package config

// What the external tests (package config_test) need of the internals. They
// load with the real handler kinds of package app, which imports config, so
// they cannot live in package config.

// LoadWith is Load with the environment read through lookup.
var LoadWith = load

// The test helpers of this package, shared with the external tests.
var (
	Env      = env
	NewLog   = newLog
	Warnings = warnings
	Perms    = perms
)

// HooksKeys are the settings keys of the hooks: section.
var HooksKeys = hooksKeys

// DaemonKeys lists the keys of the cowbird: section and their COWBIRD_*
// variables.
func DaemonKeys() (names, envs []string) {
	for _, k := range daemonKeys {
		names = append(names, k.name)
		envs = append(envs, k.env)
	}
	return names, envs
}
