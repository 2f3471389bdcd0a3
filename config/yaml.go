package config

import (
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"
)

// decoder reads typed values out of a YAML node tree and records every
// problem it meets instead of stopping at the first one.
type decoder struct {
	file string // base name of the file being read
	errs Errors
}

func (d *decoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// pair is one key/value of a YAML mapping, in file order.
type pair struct {
	key string
	val *yaml.Node
}

// resolve follows aliases to the anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// typeName names a node's type for error messages.
func typeName(n *yaml.Node) string {
	n = resolve(n)
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!bool":
		return "a boolean"
	case "!!float":
		return "a float"
	case "!!null":
		return "null"
	}
	return n.Tag
}

// mapping returns the pairs of a mapping node. Keys must be strings and
// unique within the mapping.
func (d *decoder) mapping(n *yaml.Node, path string) ([]pair, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		d.fail(path, "must be a mapping, got %s", typeName(n))
		return nil, false
	}
	seen := map[string]bool{}
	var out []pair
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			d.fail(path, "key %q must be a string, got %s", k.Value, typeName(k))
			ok = false
			continue
		}
		if seen[k.Value] {
			d.fail(join(path, k.Value), "duplicate key")
			ok = false
			continue
		}
		seen[k.Value] = true
		out = append(out, pair{key: k.Value, val: n.Content[i+1]})
	}
	return out, ok
}

// list returns the items of a sequence node.
func (d *decoder) list(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		d.fail(path, "must be a list, got %s", typeName(n))
		return nil, false
	}
	return n.Content, true
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.fail(path, "must be a string, got %s", typeName(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) nonEmpty(n *yaml.Node, path string) (string, bool) {
	s, ok := d.str(n, path)
	if ok && s == "" {
		d.fail(path, "must be a non-empty string")
		return "", false
	}
	return s, ok
}

// text returns any non-null scalar as written (credentials may be numbers).
func (d *decoder) text(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.fail(path, "must be a string, got %s", typeName(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	n = resolve(n)
	var b bool
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		d.fail(path, "must be a boolean, got %s", typeName(n))
		return false, false
	}
	return b, true
}

func (d *decoder) integer(n *yaml.Node, path string) (int, bool) {
	n = resolve(n)
	var i int
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
		d.fail(path, "must be an integer, got %s", typeName(n))
		return 0, false
	}
	return i, true
}

// yaml11Bools are the plain words PyYAML's safe loader reads as booleans
// (YAML 1.1) and yaml.v3 reads as strings (YAML 1.2).
var yaml11Bools = map[string]string{
	"yes": "true", "Yes": "true", "YES": "true", "on": "true", "On": "true", "ON": "true",
	"no": "false", "No": "false", "NO": "false", "off": "false", "Off": "false", "OFF": "false",
}

// prepare walks a section once before it is decoded, as the original's
// _expand_all does: every string key, value and list element gets $VAR
// expansion, YAML 1.1 boolean words become booleans, and value types other
// than mapping, list, string, integer, float, boolean and null are errors.
func (d *decoder) prepare(n *yaml.Node, path string, exp *expander, seen map[*yaml.Node]bool) {
	if n == nil || seen[n] {
		return
	}
	seen[n] = true
	switch n.Kind {
	case yaml.AliasNode:
		d.prepare(n.Alias, path, exp, seen)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			d.prepare(n.Content[i], path, exp, seen)
			d.prepare(n.Content[i+1], join(path, resolve(n.Content[i]).Value), exp, seen)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.prepare(c, path+"["+strconv.Itoa(i)+"]", exp, seen)
		}
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			if b, ok := yaml11Bools[n.Value]; ok && n.Style == 0 {
				n.Tag, n.Value = "!!bool", b
				return
			}
			n.Value = exp.expand(n.Value)
		case "!!int", "!!float", "!!bool", "!!null":
		default:
			d.fail(path, "unsupported value type %s", n.Tag)
		}
	default:
		d.fail(path, "unsupported YAML node")
	}
}

// join appends key to a dotted path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
