package api

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// The response types of §1.2.
const (
	typeJSON    = "application/json"
	typeHTML    = "text/html"
	typePlain   = "text/plain"
	typeAppXML  = "application/xml"
	typeTextXML = "text/xml"
	typeAny     = "*/*"
)

var supportedTypes = []string{typeJSON, typeHTML, typePlain, typeAppXML, typeTextXML}

// formatTypes maps the format request parameter to a response type.
var formatTypes = map[string]string{
	typeJSON: typeJSON, typeHTML: typeHTML, typePlain: typePlain, typeAppXML: typeAppXML, typeTextXML: typeTextXML,
	"json": typeJSON, "html": typeHTML, "text": typePlain, "plain": typePlain, "xml": typeTextXML,
}

// ctxFormat is the echo context key of the negotiated response type.
const ctxFormat = "cowbird.format"

// negotiate picks the response type before routing and answers 406 for an
// unsupported one, on every path but the plain (health, metrics) routes.
func (s *Server) negotiate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if s.exempt[r.URL.Path] {
			return next(c)
		}
		format, err := formatParam(r)
		if err != nil {
			return err
		}
		ct, ok := formatTypes[format]
		if !ok {
			ct = firstEntry(header(r, "Accept"))
			if ct != typeJSON && isBrowser(header(r, "User-Agent")) {
				ct = typeJSON
			}
		}
		if ct == "" || ct == typeAny {
			ct = typeJSON
		}
		if !slices.Contains(supportedTypes, ct) {
			c.Set(ctxFormat, typeJSON)
			return paramError(http.StatusNotAcceptable, "Unsupported Content-Type in 'Accept' header was specified.", param{
				Name: "Accept Header or Format Query", Value: ct, Compare: pyList(supportedTypes),
				Conditions: map[string]bool{"is_in": false},
			})
		}
		c.Set(ctxFormat, ct)
		return next(c)
	}
}

// formatParam is the format parameter: from the query string, else from a
// form-encoded body. Only a body over the size limit is an error.
func formatParam(r *http.Request) (string, error) {
	if f := r.URL.Query().Get("format"); f != "" {
		return f, nil
	}
	if !isForm(r) {
		return "", nil
	}
	if err := parseForm(r); err != nil {
		var me *http.MaxBytesError
		if errors.As(err, &me) {
			return "", err
		}
		return "", nil
	}
	return r.PostForm.Get("format"), nil
}

// isForm reports a form-encoded (urlencoded or multipart) body.
func isForm(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data"
}

// parseForm parses the query and a urlencoded or multipart body into r.Form.
func parseForm(r *http.Request) error {
	err := r.ParseMultipartForm(32 << 10)
	if errors.Is(err, http.ErrNotMultipart) {
		return nil
	}
	return err
}

// header finds a header by name, ignoring case and treating '-' and '_'
// alike, as the original does.
func header(r *http.Request, name string) string {
	if v := r.Header.Get(name); v != "" {
		return v
	}
	for k, v := range r.Header {
		if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// firstEntry is the first entry of a header split on ';' and ','.
func firstEntry(v string) string {
	if i := strings.IndexAny(v, ";,"); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

func isBrowser(ua string) bool {
	return strings.Contains(ua, "Mozilla") || strings.Contains(ua, "Chrome") || strings.Contains(ua, "Safari")
}

// pyList renders strings the way Python prints a list of them.
func pyList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = "'" + s + "'"
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// send answers with the envelope (code, type, detail, path, url, method)
// plus fields, rendered in the negotiated type.
func (s *Server) send(c echo.Context, code int, detail string, fields map[string]any) error {
	ct, _ := c.Get(ctxFormat).(string)
	if ct == "" {
		ct = typeJSON
	}
	r := c.Request()
	body := map[string]any{
		"path": r.URL.Path, "url": requestURL(c), "method": r.Method,
	}
	for k, v := range fields {
		body[k] = v
	}
	body["code"], body["detail"], body["type"] = code, detail, ct
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode %d response: %w", code, err)
	}
	switch ct {
	case typeHTML:
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, data, "", " "); err != nil {
			return fmt.Errorf("indent %d response: %w", code, err)
		}
		kind := "Response"
		if code >= 400 {
			kind = "Exception"
		}
		page := fmt.Sprintf("%s<br><h2>%s Details</h2><pre style='word-wrap: break-word; white-space: pre-wrap;'>%s</pre>",
			explanation(code), kind, pretty.String())
		return c.Blob(code, "text/html; charset=UTF-8", []byte(page))
	case typeAppXML, typeTextXML:
		out, err := toXML(data)
		if err != nil {
			return fmt.Errorf("encode %d response as xml: %w", code, err)
		}
		return c.Blob(code, "text/xml; charset=UTF-8", out)
	case typePlain:
		return c.Blob(code, "text/plain; charset=UTF-8", data)
	}
	return c.Blob(code, "application/json; charset=UTF-8", data)
}

// requestURL is the full URL the client asked for, prefix included.
func requestURL(c echo.Context) string {
	r := c.Request()
	host := r.Host
	if fwd := firstEntry(r.Header.Get("X-Forwarded-Host")); fwd != "" {
		host = fwd
	}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	return c.Scheme() + "://" + host + uri
}

// explanation is the status line of an HTML rendering: Pyramid's
// explanation of the status, or its title.
func explanation(code int) string {
	switch code {
	case http.StatusOK:
		return "Operation successful."
	case http.StatusBadRequest:
		return "The server could not comply with the request since it is either malformed or otherwise incorrect."
	case http.StatusNotFound:
		return "The resource could not be found."
	case http.StatusRequestEntityTooLarge:
		return "The body of your request was too large for this server."
	case http.StatusUnprocessableEntity:
		return "Unable to process the contained instructions"
	case http.StatusInternalServerError:
		return "The server has either erred or is incapable of performing the requested operation."
	}
	return http.StatusText(code)
}

// toXML converts a JSON object the way Python's dicttoxml does, with root
// element "response" and a type attribute on every element.
func toXML(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8" ?><response>`)
	writeXMLMembers(&b, v)
	b.WriteString("</response>")
	return b.Bytes(), nil
}

var xmlName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9._-]*$`)

func writeXMLMembers(b *bytes.Buffer, m map[string]any) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		writeXML(b, k, m[k])
	}
}

func writeXML(b *bytes.Buffer, name string, v any) {
	var typ string
	switch v := v.(type) {
	case nil:
		typ = "null"
	case string:
		typ = "str"
	case bool:
		typ = "bool"
	case json.Number:
		typ = "int"
		if strings.ContainsAny(string(v), ".eE") {
			typ = "float"
		}
	case []any:
		typ = "list"
	default:
		typ = "dict"
	}
	tag, attr := name, ""
	if !xmlName.MatchString(name) || strings.HasPrefix(strings.ToLower(name), "xml") {
		tag = "key"
		var esc bytes.Buffer
		_ = xml.EscapeText(&esc, []byte(name))
		attr = ` name="` + esc.String() + `"`
	}
	fmt.Fprintf(b, `<%s type="%s"%s>`, tag, typ, attr)
	switch v := v.(type) {
	case string:
		_ = xml.EscapeText(b, []byte(v))
	case bool:
		fmt.Fprint(b, v)
	case json.Number:
		b.WriteString(string(v))
	case []any:
		for _, item := range v {
			writeXML(b, "item", item)
		}
	case map[string]any:
		writeXMLMembers(b, v)
	}
	fmt.Fprintf(b, "</%s>", tag)
}
