package config

import "strings"

// FieldError is one configuration problem, located by file and key path.
type FieldError struct {
	// File is the base name of the config file the value came from; empty
	// when unknown (a Config built in code, or a COWBIRD_* variable).
	File string
	// Path is the dotted key path, e.g. "handlers.FileSystem.priority" or
	// "sync_permissions.user_workspace.permissions_mapping[1]".
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error implements error as "[file: ]path: msg".
func (e *FieldError) Error() string {
	if e.File == "" {
		return e.Path + ": " + e.Msg
	}
	return e.File + ": " + e.Path + ": " + e.Msg
}

// Errors is every problem found in a configuration, in the order found.
type Errors []*FieldError

// Error implements error: one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives errors.Is and errors.As access to each problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// orNil returns es as an error, or nil when it is empty.
func (es Errors) orNil() error {
	if len(es) == 0 {
		return nil
	}
	return es
}
