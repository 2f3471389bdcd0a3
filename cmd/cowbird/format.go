package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// field is one row of a mapping printed by the handlers command, kept in order.
type field struct{ Name, Value string }

// printList prints a list under section in one of the original CLI's formats
// (spec cowbird.md §6): json, yaml, flat or table.
func printList(w io.Writer, format, section string, items []string) error {
	switch format {
	case "json":
		return writeJSON(w, map[string]any{section: nonNil(items)})
	case "yaml":
		// PyYAML's block style, which the original prints: list items are
		// not indented under their key.
		fmt.Fprintf(w, "%s:", section)
		if len(items) == 0 {
			fmt.Fprint(w, " []")
		}
		fmt.Fprintln(w)
		for _, it := range items {
			b, err := yaml.Marshal(it)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "- %s", b)
		}
		return nil
	case "flat":
		for _, it := range items {
			fmt.Fprintln(w, it)
		}
		return nil
	case "table":
		width := max(8, len(section))
		for _, it := range items {
			width = max(width, len(it))
		}
		sep := "+" + strings.Repeat("-", width+2) + "+"
		fmt.Fprintln(w, sep)
		fmt.Fprintf(w, "| %-*s |\n", width, section)
		fmt.Fprintln(w, "+"+strings.Repeat("=", width+2)+"+")
		for _, it := range items {
			fmt.Fprintf(w, "| %-*s |\n", width, it)
		}
		fmt.Fprintln(w, sep)
		return nil
	}
	return usageError{fmt.Errorf("unknown format %q (want json, yaml, flat or table)", format)}
}

// printMap prints ordered fields under section in one of the CLI formats.
func printMap(w io.Writer, format, section string, fields []field) error {
	switch format {
	case "json":
		var buf bytes.Buffer
		buf.WriteString("{\n    " + quote(section) + ": {")
		for i, f := range fields {
			if i > 0 {
				buf.WriteString(",")
			}
			buf.WriteString("\n        " + quote(f.Name) + ": " + quote(f.Value))
		}
		if len(fields) > 0 {
			buf.WriteString("\n    ")
		}
		buf.WriteString("}\n}\n")
		_, err := w.Write(buf.Bytes())
		return err
	case "yaml":
		node := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range fields {
			node.Content = append(node.Content,
				&yaml.Node{Kind: yaml.ScalarNode, Value: f.Name},
				&yaml.Node{Kind: yaml.ScalarNode, Value: f.Value})
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		defer enc.Close()
		return enc.Encode(map[string]*yaml.Node{section: node})
	case "flat":
		for _, f := range fields {
			fmt.Fprintf(w, "%s: %s\n", f.Name, f.Value)
		}
		return nil
	case "table":
		wn, wv := 8, 8
		for _, f := range fields {
			wn, wv = max(wn, len(f.Name)), max(wv, len(f.Value))
		}
		sep := "+" + strings.Repeat("-", wn+2) + "+" + strings.Repeat("-", wv+2) + "+"
		fmt.Fprintln(w, sep)
		fmt.Fprintf(w, "| %-*s | %-*s |\n", wn, "Fields", wv, "Values")
		fmt.Fprintln(w, "+"+strings.Repeat("=", wn+2)+"+"+strings.Repeat("=", wv+2)+"+")
		for _, f := range fields {
			fmt.Fprintf(w, "| %-*s | %-*s |\n", wn, f.Name, wv, f.Value)
		}
		fmt.Fprintln(w, sep)
		return nil
	}
	return usageError{fmt.Errorf("unknown format %q (want json, yaml, flat or table)", format)}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// quote is s as a JSON string, without HTML escaping (as Python's json).
func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
