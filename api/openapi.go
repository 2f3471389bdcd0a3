package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// The Swagger tags (spec §1.11).
const (
	tagAPI      = "API"
	tagWebhooks = "Webhooks"
	tagHandlers = "Handlers"
	tagActions  = "Actions"
)

var tags = []swaggerTag{
	{Name: tagAPI, Description: "General information about the API."},
	{Name: tagWebhooks, Description: "Webhooks that are managed by Cowbird.\n\n" +
		"Each of the managed webhook provides specific functionalities against specific services of the stack."},
	{Name: tagHandlers, Description: "Handlers that are managed by Cowbird.\n\n" +
		"Each handler reacts to the webhook and file events according to its configuration."},
}

// actionsTag is listed when the actions API is served.
var actionsTag = swaggerTag{Name: tagActions, Description: "Long-running admin actions (Globus Action Provider style), " +
	"authenticated by an admin bearer token or a Magpie session cookie."}

type swaggerDoc struct {
	Swagger     string                                 `json:"swagger"`
	Info        swaggerInfo                            `json:"info"`
	Host        string                                 `json:"host"`
	BasePath    string                                 `json:"basePath"`
	Schemes     []string                               `json:"schemes"`
	Tags        []swaggerTag                           `json:"tags"`
	Paths       map[string]map[string]swaggerOperation `json:"paths"`
	Definitions map[string]any                         `json:"definitions"`
}

type swaggerInfo struct {
	Title       string         `json:"title"`
	Version     string         `json:"version"`
	Description string         `json:"description"`
	Contact     map[string]any `json:"contact"`
}

type swaggerTag struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type swaggerOperation struct {
	OperationID string                     `json:"operationId"`
	Summary     string                     `json:"summary"`
	Tags        []string                   `json:"tags"`
	Consumes    []string                   `json:"consumes,omitempty"`
	Produces    []string                   `json:"produces"`
	Parameters  []swaggerParameter         `json:"parameters"`
	Responses   map[string]swaggerResponse `json:"responses"`
}

type swaggerParameter struct {
	Name        string         `json:"name"`
	In          string         `json:"in"`
	Required    bool           `json:"required"`
	Type        string         `json:"type,omitempty"`
	Enum        []string       `json:"enum,omitempty"`
	Description string         `json:"description,omitempty"`
	Schema      map[string]any `json:"schema,omitempty"`
}

type swaggerResponse struct {
	Description string         `json:"description"`
	Schema      map[string]any `json:"schema,omitempty"`
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/definitions/" + name} }

// nullable is a string property that may be null.
var nullable = map[string]any{"type": "string", "x-nullable": true}

var userWebhookSchema = map[string]any{
	"type":     "object",
	"required": []string{"event", "user_name"},
	"properties": map[string]any{
		"event":        map[string]any{"type": "string", "enum": []string{"created", "deleted"}},
		"user_name":    map[string]any{"type": "string", "pattern": paramRegex.expr},
		"callback_url": map[string]any{"type": "string", "description": "Required when event is created; empty disables the callback."},
	},
}

var permissionWebhookSchema = map[string]any{
	"type":        "object",
	"required":    []string{"event", "service_type", "resource_id", "resource_full_name", "name", "access", "scope"},
	"description": "At least one of user and group must be a non-empty string.",
	"properties": map[string]any{
		"event":                 map[string]any{"type": "string", "enum": []string{"created", "deleted"}},
		"service_name":          nullable,
		"service_type":          map[string]any{"type": "string", "pattern": paramRegex.expr},
		"resource_id":           map[string]any{"type": "integer"},
		"resource_full_name":    map[string]any{"type": "string", "pattern": resourceNameRegex.expr},
		"resource_display_name": nullable,
		"name":                  map[string]any{"type": "string", "pattern": paramRegex.expr},
		"access":                map[string]any{"type": "string", "pattern": paramRegex.expr},
		"scope":                 map[string]any{"type": "string", "pattern": paramRegex.expr},
		"user":                  nullable,
		"group":                 nullable,
	},
}

var definitions = map[string]any{
	"Envelope": map[string]any{
		"type":     "object",
		"required": []string{"code", "type", "detail", "path", "url", "method"},
		"properties": map[string]any{
			"code":      map[string]any{"type": "integer", "description": "HTTP status code."},
			"type":      map[string]any{"type": "string", "description": "Content type of the body."},
			"detail":    map[string]any{"type": "string", "description": "Human message."},
			"path":      map[string]any{"type": "string", "description": "Request path, without the prefix."},
			"url":       map[string]any{"type": "string", "description": "Full request URL."},
			"method":    map[string]any{"type": "string", "description": "Request method."},
			"param":     ref("Param"),
			"exception": map[string]any{"type": "string", "description": "Exception of a 500 answer."},
			"webhook":   map[string]any{"type": "object", "description": "Request body of a failed user webhook."},
		},
	},
	"Param": map[string]any{
		"type": "object",
		"properties": map[string]any{
			"name":       map[string]any{"type": "string"},
			"value":      map[string]any{"description": "The failing value."},
			"compare":    map[string]any{"type": "string"},
			"conditions": map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "boolean"}},
		},
	},
	"UserWebhook":       userWebhookSchema,
	"PermissionWebhook": permissionWebhookSchema,
}

// swagger builds the Swagger 2.0 document from the route table.
func (s *Server) swagger(scheme string) swaggerDoc {
	doc := swaggerDoc{
		Swagger: "2.0",
		Info: swaggerInfo{Title: apiTitle, Version: s.opts.Version, Description: apiDescription,
			Contact: map[string]any{"name": contactName, "email": "", "url": contactURL}},
		Host: s.opts.URL, BasePath: "/", Schemes: []string{scheme}, Tags: tags,
		Paths: map[string]map[string]swaggerOperation{}, Definitions: definitions,
	}
	if s.opts.Actions != nil {
		doc.Tags = append(slices.Clip(tags), actionsTag)
	}
	for _, rt := range s.routes {
		path := swaggerPath(rt.path)
		if doc.Paths[path] == nil {
			doc.Paths[path] = map[string]swaggerOperation{}
		}
		doc.Paths[path][strings.ToLower(rt.method)] = rt.operation()
	}
	return doc
}

func (rt route) operation() swaggerOperation {
	op := swaggerOperation{OperationID: rt.name, Summary: rt.summary, Tags: []string{rt.tag},
		Parameters: []swaggerParameter{}, Responses: map[string]swaggerResponse{}}
	for _, seg := range strings.Split(rt.path, "/") {
		if name, ok := strings.CutPrefix(seg, ":"); ok {
			op.Parameters = append(op.Parameters, swaggerParameter{Name: name, In: "path", Required: true,
				Type: "string", Description: "Must match " + paramRegex.expr})
		}
	}
	if rt.body != nil {
		op.Consumes = []string{typeJSON, "application/x-www-form-urlencoded"}
		op.Parameters = append(op.Parameters, swaggerParameter{Name: "body", In: "body", Required: true, Schema: rt.body})
	}
	op.Produces = []string{typeJSON}
	if !rt.plain {
		op.Produces = supportedTypes
		op.Parameters = append(op.Parameters, swaggerParameter{Name: "format", In: "query", Type: "string",
			Enum: formatNames(), Description: "Response type; overrides the Accept header."})
	}
	for code, detail := range rt.responses {
		resp := swaggerResponse{Description: detail}
		if !rt.plain {
			resp.Schema = ref("Envelope")
			if code == http.StatusOK && rt.fields != nil {
				resp.Schema = map[string]any{"allOf": []any{ref("Envelope"),
					map[string]any{"type": "object", "properties": rt.fields}}}
			}
		}
		op.Responses[strconv.Itoa(code)] = resp
	}
	if !rt.plain {
		op.Responses["406"] = swaggerResponse{Description: "Unsupported Content-Type in 'Accept' header was specified.", Schema: ref("Envelope")}
	}
	return op
}

// swaggerPath turns /handlers/:handler_name into /handlers/{handler_name}.
func swaggerPath(p string) string {
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		if name, ok := strings.CutPrefix(seg, ":"); ok {
			segs[i] = "{" + name + "}"
		}
	}
	return strings.Join(segs, "/")
}

func formatNames() []string {
	names := make([]string, 0, len(formatTypes))
	for k := range formatTypes {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
