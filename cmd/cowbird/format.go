package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cowbird-go/cowbird/handlers"
)

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
		rows := make([][]string, len(items))
		for i, it := range items {
			rows[i] = []string{it}
		}
		printTable(w, []string{section}, rows)
		return nil
	}
	return usageError{Err: fmt.Errorf("unknown format %q (want json, yaml, flat or table)", format)}
}

// printMap prints ordered fields under section in one of the CLI formats.
func printMap(w io.Writer, format, section string, fields []handlers.Field) error {
	switch format {
	case "json":
		var buf bytes.Buffer
		buf.WriteString("{\n    " + quote(section) + ": {")
		for i, f := range fields {
			if i > 0 {
				buf.WriteString(",")
			}
			buf.WriteString("\n        " + quote(f.Key) + ": " + quote(f.Value))
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
				&yaml.Node{Kind: yaml.ScalarNode, Value: f.Key},
				&yaml.Node{Kind: yaml.ScalarNode, Value: f.Value})
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		defer enc.Close()
		return enc.Encode(map[string]*yaml.Node{section: node})
	case "flat":
		for _, f := range fields {
			fmt.Fprintf(w, "%s: %s\n", f.Key, f.Value)
		}
		return nil
	case "table":
		rows := make([][]string, len(fields))
		for i, f := range fields {
			rows[i] = []string{f.Key, f.Value}
		}
		printTable(w, []string{"Fields", "Values"}, rows)
		return nil
	}
	return usageError{Err: fmt.Errorf("unknown format %q (want json, yaml, flat or table)", format)}
}

// printTable prints rows under headers as the original CLI's tables do,
// each column at least 8 wide.
func printTable(w io.Writer, headers []string, rows [][]string) {
	widths := make([]int, len(headers))
	for i, h := range headers {
		widths[i] = max(8, len(h))
		for _, r := range rows {
			widths[i] = max(widths[i], len(r[i]))
		}
	}
	line := func(fill string) {
		for _, n := range widths {
			fmt.Fprint(w, "+"+strings.Repeat(fill, n+2))
		}
		fmt.Fprintln(w, "+")
	}
	row := func(cells []string) {
		for i, c := range cells {
			fmt.Fprintf(w, "| %-*s ", widths[i], c)
		}
		fmt.Fprintln(w, "|")
	}
	line("-")
	row(headers)
	line("=")
	for _, r := range rows {
		row(r)
	}
	line("-")
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
