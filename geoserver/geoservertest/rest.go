package geoservertest

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Param is one data store connection parameter.
type Param struct{ Key, Value string }

// Datastore is a data store as the emulator holds it.
type Datastore struct {
	Name, Type string
	Enabled    bool
	// Params are the connection parameters in the order last sent.
	Params []Param
	// FeatureTypes are the names of its feature types, sorted.
	FeatureTypes []string
}

// Param returns the value of connection parameter key.
func (d Datastore) Param(key string) (string, bool) {
	for _, p := range d.Params {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// FeatureType is a published feature type as the emulator holds it.
type FeatureType struct {
	Name             string `json:"name"`
	NativeCRS        string `json:"nativeCRS"`
	SRS              string `json:"srs"`
	ProjectionPolicy string `json:"projectionPolicy"`
	MaxFeatures      int    `json:"maxFeatures"`
	NumDecimals      int    `json:"numDecimals"`
}

type workspace struct {
	isolated bool
	stores   map[string]*store
	layers   map[string]bool
}

type store struct {
	Datastore
	types map[string]FeatureType
}

func (st *store) has(name string) bool {
	_, ok := st.types[name]
	return ok
}

// Workspaces returns the workspace names, sorted.
func (s *Server) Workspaces() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedKeys(s.workspaces)
}

// Namespace returns the URI of namespace prefix.
func (s *Server) Namespace(prefix string) (uri string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	uri, ok = s.namespaces[prefix]
	return uri, ok
}

// Datastore returns data store name of workspace ws.
func (s *Server) Datastore(ws, name string) (Datastore, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(ws, name)
	if st == nil {
		return Datastore{}, false
	}
	d := st.Datastore
	d.Params = slices.Clone(d.Params)
	d.FeatureTypes = sortedKeys(st.types)
	return d, true
}

// FeatureType returns feature type name of data store ds in workspace ws.
func (s *Server) FeatureType(ws, ds, name string) (FeatureType, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store(ws, ds)
	if st == nil {
		return FeatureType{}, false
	}
	ft, ok := st.types[name]
	return ft, ok
}

// Layers returns the names of the layers of workspace ws (without the "ws:"
// prefix), sorted.
func (s *Server) Layers(ws string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workspaces[ws]; w != nil {
		return sortedKeys(w.layers)
	}
	return nil
}

// store returns data store ds of ws or nil; s.mu must be held.
func (s *Server) store(ws, ds string) *store {
	if w := s.workspaces[ws]; w != nil {
		return w.stores[ds]
	}
	return nil
}

func (s *Server) routes() {
	const rest = basePath + "/rest/workspaces"
	s.handle(RouteCreateWorkspace, "POST "+rest, s.createWorkspace)
	s.handle(RouteCreateWorkspace, "POST "+rest+"/{$}", func(w http.ResponseWriter, r *http.Request) {
		if s.opts.StrictTrailingSlash {
			plain(w, http.StatusNotFound, "No endpoint POST "+r.URL.Path)
			return
		}
		s.createWorkspace(w, r)
	})
	s.handle(RouteDeleteWorkspace, "DELETE "+rest+"/{ws}", s.deleteWorkspace)
	s.handle(RouteCreateDatastore, "POST "+rest+"/{ws}/datastores", s.createDatastore)
	s.handle(RouteConfigureDatastore, "PUT "+rest+"/{ws}/datastores/{ds}", s.configureDatastore)
	s.handle(RoutePublishFeatureType, "POST "+rest+"/{ws}/datastores/{ds}/featuretypes", s.publishFeatureType)
	s.handle(RouteDeleteFeatureType, "DELETE "+rest+"/{ws}/datastores/{ds}/featuretypes/{ft}", s.deleteFeatureType)
	s.handle(RouteGetWorkspace, "GET "+rest+"/{ws}", s.getWorkspace)
	s.handle(RouteGetDatastore, "GET "+rest+"/{ws}/datastores/{ds}", s.getDatastore)
	s.handle(RouteListFeatureTypes, "GET "+rest+"/{ws}/datastores/{ds}/featuretypes", s.listFeatureTypes)
	s.handle(RouteListLayers, "GET "+rest+"/{ws}/layers", s.listLayers)
}

// getWorkspace answers GET /rest/workspaces/{ws} in JSON, as GeoServer does.
func (s *Server) getWorkspace(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("ws")
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.workspaces[name]
	if ws == nil {
		plain(w, http.StatusNotFound, "No such workspace: '"+name+"' found")
		return
	}
	writeJSON(w, map[string]any{"workspace": map[string]any{"name": name, "isolated": ws.isolated}})
}

// getDatastore answers GET /rest/workspaces/{ws}/datastores/{ds} in JSON,
// its connection parameters as XStream entries.
func (s *Server) getDatastore(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.pathStore(w, r, "No such datastore: ")
	if st == nil {
		return
	}
	params := make([]map[string]string, len(st.Params))
	for i, p := range st.Params {
		params[i] = map[string]string{"@key": p.Key, "$": p.Value}
	}
	writeJSON(w, map[string]any{"dataStore": map[string]any{
		"name": st.Name, "type": st.Type, "enabled": st.Enabled,
		"workspace":            map[string]any{"name": r.PathValue("ws")},
		"connectionParameters": map[string]any{"entry": params},
	}})
}

// listFeatureTypes answers GET .../featuretypes: the published feature
// types of the data store.
func (s *Server) listFeatureTypes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.pathStore(w, r, "No such data store: ")
	if st == nil {
		return
	}
	writeJSON(w, map[string]any{"featureTypes": namedList("featureType", sortedKeys(st.types))})
}

// listLayers answers GET /rest/workspaces/{ws}/layers.
func (s *Server) listLayers(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("ws")
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.workspaces[name]
	if ws == nil {
		plain(w, http.StatusNotFound, "No such workspace: '"+name+"' found")
		return
	}
	writeJSON(w, map[string]any{"layers": namedList("layer", sortedKeys(ws.layers))})
}

// namedList is a GeoServer listing in XStream's JSON: "" when empty, an
// object (not a list) for one element, else a list.
func namedList(key string, names []string) any {
	items := make([]map[string]string, len(names))
	for i, n := range names {
		items[i] = map[string]string{"name": n}
	}
	switch len(items) {
	case 0:
		return ""
	case 1:
		return map[string]any{key: items[0]}
	}
	return map[string]any{key: items}
}

// writeJSON answers 200 with v in JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) createWorkspace(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Workspace struct {
			Name     string   `json:"name"`
			Isolated flexBool `json:"isolated"`
		} `json:"workspace"`
	}
	if !decode(w, r, &body) {
		return
	}
	name := body.Workspace.Name
	if name == "" {
		plain(w, http.StatusInternalServerError, "Workspace name must not be null")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.workspaces[name] != nil {
		sendError(w, s.opts.DuplicateWorkspaceStatus, "Workspace '"+name+"' already exists")
		return
	}
	s.workspaces[name] = &workspace{isolated: bool(body.Workspace.Isolated), stores: map[string]*store{}, layers: map[string]bool{}}
	s.namespaces[name] = "http://" + name
	created(w, r, "/rest/workspaces/"+url.PathEscape(name), name)
}

func (s *Server) deleteWorkspace(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("ws")
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.workspaces[name]
	switch {
	case ws == nil:
		sendError(w, http.StatusNotFound, "Workspace '"+name+"' not found")
	case len(ws.stores) > 0 && !recurse(r):
		sendError(w, http.StatusForbidden, "Workspace not empty")
	default:
		delete(s.workspaces, name)
		delete(s.namespaces, name)
		w.WriteHeader(http.StatusOK)
	}
}

type datastoreBody struct {
	DataStore struct {
		Name                 string    `json:"name"`
		Type                 string    `json:"type"`
		Enabled              *flexBool `json:"enabled"`
		ConnectionParameters struct {
			Entry entries `json:"entry"`
		} `json:"connectionParameters"`
	} `json:"dataStore"`
}

func (s *Server) createDatastore(w http.ResponseWriter, r *http.Request) {
	var body datastoreBody
	if !decode(w, r, &body) {
		return
	}
	wsName, b := r.PathValue("ws"), body.DataStore
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.workspaces[wsName]
	switch {
	case ws == nil:
		// GeoServer dereferences the missing workspace.
		plain(w, http.StatusInternalServerError, "java.lang.NullPointerException: workspace '"+wsName+"' is null")
	case b.Name == "":
		plain(w, http.StatusInternalServerError, "Store name must not be null")
	case ws.stores[b.Name] != nil:
		plain(w, http.StatusInternalServerError, fmt.Sprintf("Store '%s' already exists in workspace '%s'", b.Name, wsName))
	default:
		st := &store{Datastore: Datastore{Name: b.Name, Type: b.Type, Enabled: true, Params: b.ConnectionParameters.Entry}, types: map[string]FeatureType{}}
		if b.Enabled != nil {
			st.Enabled = bool(*b.Enabled)
		}
		ws.stores[b.Name] = st
		created(w, r, "/rest/workspaces/"+url.PathEscape(wsName)+"/datastores/"+url.PathEscape(b.Name), b.Name)
	}
}

func (s *Server) configureDatastore(w http.ResponseWriter, r *http.Request) {
	var body datastoreBody
	if !decode(w, r, &body) {
		return
	}
	b := body.DataStore
	s.mu.Lock()
	defer s.mu.Unlock()
	// Spelled as GeoServer's data store controller does; clients tell it apart.
	st := s.pathStore(w, r, "No such datastore: ")
	if st == nil {
		return
	}
	if b.Type != "" {
		st.Type = b.Type
	}
	if b.Enabled != nil {
		st.Enabled = bool(*b.Enabled)
	}
	if len(b.ConnectionParameters.Entry) > 0 {
		st.Params = b.ConnectionParameters.Entry
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) publishFeatureType(w http.ResponseWriter, r *http.Request) {
	var body struct {
		FeatureType FeatureType `json:"featureType"`
	}
	if !decode(w, r, &body) {
		return
	}
	wsName, dsName, ft := r.PathValue("ws"), r.PathValue("ds"), body.FeatureType
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.pathStore(w, r, "No such data store: ")
	switch {
	case st == nil: // answered
	case ft.Name == "":
		plain(w, http.StatusInternalServerError, "Resource name must not be null")
	case st.has(ft.Name) || s.workspaces[wsName].layers[ft.Name]:
		plain(w, http.StatusInternalServerError, fmt.Sprintf("Resource named '%s' already exists in namespace: '%s'", ft.Name, wsName))
	case !s.shapefileExists(st, ft.Name):
		sendError(w, http.StatusBadRequest, "Trying to create new feature type inside the store, but no attributes were specified")
	default:
		st.types[ft.Name] = ft
		s.workspaces[wsName].layers[ft.Name] = true
		created(w, r, "/rest/workspaces/"+url.PathEscape(wsName)+"/datastores/"+url.PathEscape(dsName)+"/featuretypes/"+url.PathEscape(ft.Name), "")
	}
}

// shapefileExists reports whether name.shp is in st's directory, through
// Options.PathMap; true when no mapping is configured.
func (s *Server) shapefileExists(st *store, name string) bool {
	if len(s.opts.PathMap) == 0 {
		return true
	}
	raw, _ := st.Param("url")
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "file" {
		return false
	}
	p := path.Clean(u.Path)
	best := ""
	for prefix := range s.opts.PathMap {
		if (p == prefix || strings.HasPrefix(p, strings.TrimSuffix(prefix, "/")+"/")) && len(prefix) > len(best) {
			best = prefix
		}
	}
	if best == "" {
		return false
	}
	dir := filepath.Join(s.opts.PathMap[best], filepath.FromSlash(strings.TrimPrefix(p, best)))
	fi, err := os.Stat(filepath.Join(dir, name+".shp"))
	return err == nil && fi.Mode().IsRegular()
}

func (s *Server) deleteFeatureType(w http.ResponseWriter, r *http.Request) {
	wsName, dsName, name := r.PathValue("ws"), r.PathValue("ds"), r.PathValue("ft")
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.pathStore(w, r, "No such data store: ")
	switch {
	case st == nil: // answered
	case !st.has(name):
		plain(w, http.StatusNotFound, "No such feature type: "+wsName+","+dsName+","+name)
	case s.workspaces[wsName].layers[name] && !recurse(r):
		sendError(w, http.StatusForbidden, "feature type referenced by layer(s)")
	default:
		delete(st.types, name)
		delete(s.workspaces[wsName].layers, name)
		w.WriteHeader(http.StatusOK)
	}
}

// pathStore returns the data store named by r's {ws} and {ds}, or answers 404
// with missing followed by "ws,ds" and returns nil; s.mu must be held.
func (s *Server) pathStore(w http.ResponseWriter, r *http.Request, missing string) *store {
	wsName, dsName := r.PathValue("ws"), r.PathValue("ds")
	st := s.store(wsName, dsName)
	if st == nil {
		plain(w, http.StatusNotFound, missing+wsName+","+dsName)
	}
	return st
}

func recurse(r *http.Request) bool { return strings.EqualFold(r.URL.Query().Get("recurse"), "true") }

// decode reads r's JSON body into v, answering 400 when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		sendError(w, http.StatusBadRequest, "Could not parse the request body: "+err.Error())
		return false
	}
	return true
}

// created answers 201 with a Location under the REST base and a text body.
func created(w http.ResponseWriter, r *http.Request, loc, body string) {
	w.Header().Set("Location", "http://"+r.Host+basePath+loc)
	plain(w, http.StatusCreated, body)
}

// plain answers like GeoServer's ResourceNotFound and 5xx errors.
func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain;charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// sendError answers like a 4xx RestException under Tomcat: an HTML page
// with the message HTML-escaped (' becomes &#39;).
func sendError(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="GeoServer Realm"`)
	}
	if msg == "" {
		msg = http.StatusText(code)
	}
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	w.WriteHeader(code)
	title := fmt.Sprintf("HTTP Status %d – %s", code, http.StatusText(code))
	_, _ = fmt.Fprintf(w, `<!doctype html><html lang="en"><head><title>%s</title></head><body><h1>%s</h1>`+
		`<hr class="line" /><p><b>Type</b> Status Report</p><p><b>Message</b> %s</p><hr class="line" />`+
		`<h3>Apache Tomcat</h3></body></html>`, title, title, html.EscapeString(msg))
}

// flexBool reads XStream booleans, sent as true or as "True"/"true".
type flexBool bool

// UnmarshalJSON implements json.Unmarshaler.
func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*b = flexBool(v)
	case string:
		*b = flexBool(strings.EqualFold(v, "true"))
	default:
		return fmt.Errorf("boolean expected, got %s", data)
	}
	return nil
}

// entries reads an XStream map: a list of {"@key": k, "$": v}, or a single
// such object.
type entries []Param

// UnmarshalJSON implements json.Unmarshaler.
func (e *entries) UnmarshalJSON(data []byte) error {
	type entry struct {
		Key   string `json:"@key"`
		Value string `json:"$"`
	}
	var list []entry
	if err := json.Unmarshal(data, &list); err != nil {
		var one entry
		if json.Unmarshal(data, &one) != nil {
			return err
		}
		list = []entry{one}
	}
	*e = make(entries, len(list))
	for i, en := range list {
		(*e)[i] = Param{Key: en.Key, Value: en.Value}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
