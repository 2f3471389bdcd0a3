package handlers

import (
	"fmt"
	"sort"
)

// Registration is one configured handler, in config file order.
type Registration struct {
	Handler Handler
	// Active handlers take part in dispatch; inactive ones are only listed
	// by Registry.All.
	Active bool
	// Priority orders handlers, lower first; nil means unset (last).
	Priority *int
	// ShareFiles offers the file events of the handler's watches to the
	// active FileObservers too.
	ShareFiles bool
}

// Registry holds the configured handlers sorted as the original sorts them:
// ascending priority (unset last), ties in config file order.
type Registry struct {
	all []Registration
}

// NewRegistry sorts regs (given in config file order). Duplicate names are an
// error.
func NewRegistry(regs ...Registration) (*Registry, error) {
	r := &Registry{all: append([]Registration(nil), regs...)}
	seen := map[string]bool{}
	for _, reg := range regs {
		name := reg.Handler.Name()
		if seen[name] {
			return nil, fmt.Errorf("handler %q registered twice", name)
		}
		seen[name] = true
	}
	sort.SliceStable(r.all, func(i, j int) bool {
		pi, pj := r.all[i].Priority, r.all[j].Priority
		switch {
		case pi == nil:
			return false
		case pj == nil:
			return true
		default:
			return *pi < *pj
		}
	})
	return r, nil
}

// Active returns the active handlers in dispatch order.
func (r *Registry) Active() []Handler {
	var out []Handler
	for _, reg := range r.all {
		if reg.Active {
			out = append(out, reg.Handler)
		}
	}
	return out
}

// All returns every registration in dispatch order.
func (r *Registry) All() []Registration { return append([]Registration(nil), r.all...) }

// sharesFiles reports whether the active handler name shares its file
// events with the FileObservers.
func (r *Registry) sharesFiles(name string) bool {
	for _, reg := range r.all {
		if reg.Active && reg.Handler.Name() == name {
			return reg.ShareFiles
		}
	}
	return false
}

// Lookup returns the active handler with exactly that name.
func (r *Registry) Lookup(name string) (Handler, bool) {
	for _, reg := range r.all {
		if reg.Active && reg.Handler.Name() == name {
			return reg.Handler, true
		}
	}
	return nil, false
}
