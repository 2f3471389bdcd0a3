package actions

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// compileSchema compiles a type's input schema.
func compileSchema(name string, schema json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, err
	}
	url := "urn:cowbird:action:" + name
	c := jsonschema.NewCompiler()
	if err := c.AddResource(url, doc); err != nil {
		return nil, err
	}
	return c.Compile(url)
}

// validateBody checks body against sch and returns it decoded (numbers as
// json.Number). A failure is a *ValidationError naming the field under
// "$.body".
func validateBody(sch *jsonschema.Schema, body json.RawMessage) (any, error) {
	if len(body) == 0 {
		return nil, &ValidationError{Field: "$.body", Category: "missing", Description: "Field required"}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return nil, &ValidationError{Field: "$.body", Category: "json", Description: "Input is not valid JSON"}
	}
	if _, ok := inst.(map[string]any); !ok {
		return nil, &ValidationError{Field: "$.body", Category: "type", Description: "Input should be an object"}
	}
	err = sch.Validate(inst)
	if err == nil {
		return inst, nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil, fmt.Errorf("validate body: %w", err)
	}
	var found []*ValidationError
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		for _, c := range e.Causes {
			walk(c)
		}
		if len(e.Causes) == 0 {
			found = append(found, leafError(inst, e))
		}
	}
	walk(ve)
	// The validator walks maps, so its order varies: report the first
	// failure by field for a stable answer.
	return nil, slices.MinFunc(found, func(a, b *ValidationError) int {
		return cmp.Or(cmp.Compare(a.Field, b.Field), cmp.Compare(a.Category, b.Category))
	})
}

// leafError turns one schema failure into a *ValidationError. A missing or
// unexpected property is named itself, rather than the object holding it.
func leafError(inst any, e *jsonschema.ValidationError) *ValidationError {
	loc := e.InstanceLocation
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		loc = append(slices.Clone(loc), k.Missing[0])
	case *kind.AdditionalProperties:
		loc = append(slices.Clone(loc), k.Properties[0])
	}
	category := "schema"
	if kw := e.ErrorKind.KeywordPath(); len(kw) > 0 {
		category = kw[0]
	}
	return &ValidationError{Field: jsonPath(inst, loc), Category: category, Description: "Input failed schema validation"}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// jsonPath writes the location tokens of a value in inst as a JSONPath
// rooted at the run request: $.body.users[1]. The instance tells array
// indexes from object keys.
func jsonPath(inst any, loc []string) string {
	path := "$.body"
	v := inst
	for _, tok := range loc {
		if arr, ok := v.([]any); ok {
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(arr) {
				path += "[" + tok + "]"
				v = arr[i]
				continue
			}
		}
		if identRE.MatchString(tok) {
			path += "." + tok
		} else {
			path += "[" + strconv.Quote(tok) + "]"
		}
		if obj, ok := v.(map[string]any); ok {
			v = obj[tok]
		} else {
			v = nil
		}
	}
	return path
}
