package magpie

// Name is the Magpie handler's configuration key: its name under handlers in
// the config file, in the registry and in the Cowbird routes.
const Name = "Magpie"
