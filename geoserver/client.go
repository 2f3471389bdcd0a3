// Package geoserver talks to GeoServer's REST API the way Python Cowbird
// does (spec cowbird.md §3.4, magpie_geoserver.md Part B): user workspaces, a
// directory-of-shapefiles data store per user, and one published feature type
// (layer) per shapefile.
package geoserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Op names a GeoServer REST operation as the original names it in its error
// messages (cowbird.md §3.4.2).
type Op string

// The six operations of cowbird.md §3.4.2.
const (
	OpCreateWorkspace    Op = "_create_workspace_request"
	OpRemoveWorkspace    Op = "_remove_workspace_request"
	OpCreateDatastore    Op = "_create_datastore_request"
	OpConfigureDatastore Op = "_configure_datastore_request"
	OpPublishShapefile   Op = "_publish_shapefile_request"
	OpRemoveShapefile    Op = "_remove_shapefile_request"
)

var allOps = []Op{OpCreateWorkspace, OpRemoveWorkspace, OpCreateDatastore,
	OpConfigureDatastore, OpPublishShapefile, OpRemoveShapefile}

// DefaultContainerWorkspaceDir is where GeoServer sees the user workspaces
// (the original's hard-coded mount).
const DefaultContainerWorkspaceDir = "/user_workspaces"

// DefaultTimeout is the timeout of the HTTP client made when none is given
// (COWBIRD_REQUEST_TIMEOUT's default).
const DefaultTimeout = 5 * time.Second

// datastoreType is the GeoServer store type Cowbird creates.
const datastoreType = "Directory of spatial files (shapefiles)"

// maxBody bounds how much of an answer is read; maxQuoted how much of it a
// GeoserverError quotes.
const (
	maxBody   = 64 << 10
	maxQuoted = 1 << 10
)

// ClientOptions configures a Client.
type ClientOptions struct {
	// URL is GeoServer's base URL, e.g. http://geoserver:8080/geoserver; the
	// REST API is under URL + "/rest".
	URL string
	// User and Password are the admin credentials sent with HTTP Basic auth
	// on every call (none when both are empty).
	User, Password string
	// HTTPClient sends the requests; nil means a client with DefaultTimeout.
	HTTPClient *http.Client
	// Log receives debug lines and tolerated-duplicate warnings; nil discards.
	Log *logrus.Entry
	// ContainerWorkspaceDir is workspace_dir as mounted inside GeoServer; a
	// user's data store directory is <it>/<user>/shapefile_datastore.
	// Default DefaultContainerWorkspaceDir.
	ContainerWorkspaceDir string
}

// Client calls the GeoServer REST API. It is safe for concurrent use.
type Client struct {
	rest     string // base URL + "/rest"
	redacted string // rest with any password hidden, for errors and logs
	urlErr   error  // set when ClientOptions.URL is unusable
	user     string
	password string
	http     *http.Client
	log      *logrus.Entry
	wsDir    string
	counts   map[Op]*atomic.Int64
}

// NewClient returns a client for opts. An unusable URL is reported by every
// call.
func NewClient(opts ClientOptions) *Client {
	c := &Client{
		user:     opts.User,
		password: opts.Password,
		http:     opts.HTTPClient,
		log:      opts.Log,
		wsDir:    opts.ContainerWorkspaceDir,
		counts:   make(map[Op]*atomic.Int64, len(allOps)),
	}
	for _, op := range allOps {
		c.counts[op] = new(atomic.Int64)
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: DefaultTimeout}
	}
	if c.log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		c.log = logrus.NewEntry(l)
	}
	if c.wsDir == "" {
		c.wsDir = DefaultContainerWorkspaceDir
	}
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// url.Parse errors quote the URL, which may hold a password.
		c.urlErr = errors.New("geoserver client: ClientOptions.URL must be an absolute http(s) URL")
		return c
	}
	u.RawQuery, u.Fragment = "", ""
	c.rest = strings.TrimRight(u.String(), "/") + "/rest"
	c.redacted = strings.TrimRight(u.Redacted(), "/") + "/rest"
	return c
}

// DatastoreName is the name of user ws's shapefile data store.
func DatastoreName(ws string) string { return "shapefile_datastore_" + ws }

// DatastoreURL is the connection "url" parameter of ws's data store: the data
// store directory as GeoServer sees it.
func (c *Client) DatastoreURL(ws string) string {
	return "file://" + path.Join(c.wsDir, ws, "shapefile_datastore")
}

// Requests returns how many requests op has sent (transport failures
// included).
func (c *Client) Requests(op Op) int64 {
	if n, ok := c.counts[op]; ok {
		return n.Load()
	}
	return 0
}

// CreateWorkspace creates workspace ws (isolated; GeoServer adds namespace
// ws). An existing workspace is tolerated with a warning, in both the 401
// (GeoServer ≤ 2.19) and 409 (≥ 2.20) flavours.
func (c *Client) CreateWorkspace(ctx context.Context, ws string) error {
	if err := checkName("workspace", ws); err != nil {
		return fmt.Errorf("create workspace: %w", err)
	}
	body := workspaceBody{Workspace: workspace{Name: ws, Isolated: "True"}}
	if err := c.do(ctx, OpCreateWorkspace, http.MethodPost, "/workspaces/", body); err != nil {
		return fmt.Errorf("create workspace %q: %w", ws, err)
	}
	return nil
}

// RemoveWorkspace deletes workspace ws with everything in it (recurse=true).
// A missing workspace gives a GeoserverError matching ErrNotFound.
func (c *Client) RemoveWorkspace(ctx context.Context, ws string) error {
	if err := checkName("workspace", ws); err != nil {
		return fmt.Errorf("remove workspace: %w", err)
	}
	if err := c.do(ctx, OpRemoveWorkspace, http.MethodDelete, "/workspaces/"+url.PathEscape(ws)+"?recurse=true", nil); err != nil {
		return fmt.Errorf("remove workspace %q: %w", ws, err)
	}
	return nil
}

// CreateDatastore creates ws's shapefile data store empty, then configures
// its connection parameters (two steps, because GeoServer picks the wrong
// store type when given the parameters at creation). A store that already
// exists is reconfigured, so a retried or replayed call converges.
func (c *Client) CreateDatastore(ctx context.Context, ws string) error {
	if err := checkName("workspace", ws); err != nil {
		return fmt.Errorf("create datastore: %w", err)
	}
	ds := DatastoreName(ws)
	dsPath := "/workspaces/" + url.PathEscape(ws) + "/datastores"
	err := c.do(ctx, OpCreateDatastore, http.MethodPost, dsPath, newDatastoreBody(ds, []entry{}))
	if errors.Is(err, ErrExists) {
		c.log.WithField("workspace", ws).Warnf("Operation [%s] failed :Geoserver datastore already exists", OpCreateDatastore)
		err = nil
	}
	if err == nil {
		err = c.do(ctx, OpConfigureDatastore, http.MethodPut, dsPath+"/"+url.PathEscape(ds), newDatastoreBody(ds, c.connectionParameters(ws)))
	}
	if err != nil {
		return fmt.Errorf("create datastore %q in workspace %q: %w", ds, ws, err)
	}
	return nil
}

// PublishShapefile publishes shapefile name (no extension) of ws's data
// store as a feature type; GeoServer also creates layer ws:name.
func (c *Client) PublishShapefile(ctx context.Context, ws, name string) error {
	if err := errors.Join(checkName("workspace", ws), checkName("shapefile", name)); err != nil {
		return fmt.Errorf("publish shapefile: %w", err)
	}
	body := featureTypeBody{FeatureType: featureType{
		Name:             name,
		NativeCRS:        wgs84WKT,
		SRS:              "EPSG:4326",
		ProjectionPolicy: "REPROJECT_TO_DECLARED",
		MaxFeatures:      5000,
		NumDecimals:      6,
	}}
	if err := c.do(ctx, OpPublishShapefile, http.MethodPost, c.featureTypesPath(ws), body); err != nil {
		return fmt.Errorf("publish shapefile %q in workspace %q: %w", name, ws, err)
	}
	return nil
}

// RemoveShapefile deletes feature type name of ws's data store and its layer
// (recurse=true). A missing store or type gives a GeoserverError matching
// ErrNotFound.
func (c *Client) RemoveShapefile(ctx context.Context, ws, name string) error {
	if err := errors.Join(checkName("workspace", ws), checkName("shapefile", name)); err != nil {
		return fmt.Errorf("remove shapefile: %w", err)
	}
	p := c.featureTypesPath(ws) + "/" + url.PathEscape(name) + "?recurse=true"
	if err := c.do(ctx, OpRemoveShapefile, http.MethodDelete, p, nil); err != nil {
		return fmt.Errorf("remove shapefile %q in workspace %q: %w", name, ws, err)
	}
	return nil
}

// FeatureTypes lists the feature types of ws's data store. A workspace or
// data store GeoServer does not have (404) has none. It changes nothing,
// and is not counted among the operations of Requests.
func (c *Client) FeatureTypes(ctx context.Context, ws string) ([]string, error) {
	if err := checkName("workspace", ws); err != nil {
		return nil, fmt.Errorf("list feature types: %w", err)
	}
	var types namedList
	if _, err := c.get(ctx, c.featureTypesPath(ws), &struct {
		FeatureTypes *namedList `json:"featureTypes"`
	}{&types}); err != nil {
		return nil, fmt.Errorf("list feature types of workspace %q: %w", ws, err)
	}
	return types, nil
}

func (c *Client) featureTypesPath(ws string) string {
	return "/workspaces/" + url.PathEscape(ws) + "/datastores/" + url.PathEscape(DatastoreName(ws)) + "/featuretypes"
}

func checkName(field, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", field)
	}
	return nil
}

// entry is one XStream "mapped" map entry.
type entry struct {
	Value string `json:"$"`
	Key   string `json:"@key"`
}

type workspaceBody struct {
	Workspace workspace `json:"workspace"`
}

type workspace struct {
	Name     string `json:"name"`
	Isolated string `json:"isolated"`
}

type datastoreBody struct {
	DataStore datastore `json:"dataStore"`
}

type datastore struct {
	Name                 string `json:"name"`
	Type                 string `json:"type"`
	ConnectionParameters struct {
		Entry []entry `json:"entry"`
	} `json:"connectionParameters"`
}

func newDatastoreBody(name string, params []entry) datastoreBody {
	b := datastoreBody{DataStore: datastore{Name: name, Type: datastoreType}}
	b.DataStore.ConnectionParameters.Entry = params
	return b
}

type featureTypeBody struct {
	FeatureType featureType `json:"featureType"`
}

// connectionParameters are the original's, in its order.
func (c *Client) connectionParameters(ws string) []entry {
	return []entry{
		{"UTF-8", "charset"},
		{"shapefile", "filetype"},
		{"true", "create spatial index"},
		{"true", "memory mapped buffer"},
		{"GMT", "timezone"},
		{"true", "enable spatial index"},
		{"http://" + DatastoreName(ws), "namespace"},
		{"true", "cache and reuse memory maps"},
		{c.DatastoreURL(ws), "url"},
		{"shape", "fstype"},
	}
}

type featureType struct {
	Name             string `json:"name"`
	NativeCRS        string `json:"nativeCRS"`
	SRS              string `json:"srs"`
	ProjectionPolicy string `json:"projectionPolicy"`
	MaxFeatures      int    `json:"maxFeatures"`
	NumDecimals      int    `json:"numDecimals"`
}

// wgs84WKT is the native CRS sent with every published shapefile.
const wgs84WKT = `GEOGCS["WGS 84",
  DATUM["World Geodetic System 1984",
    SPHEROID["WGS 84", 6378137.0, 298.257223563, AUTHORITY["EPSG","7030"]],
    AUTHORITY["EPSG","6326"]],
  PRIMEM["Greenwich", 0.0, AUTHORITY["EPSG","8901"]],
  UNIT["degree", 0.017453292519943295],
  AXIS["Geodetic longitude", EAST],
  AXIS["Geodetic latitude", NORTH],
  AUTHORITY["EPSG","4326"]]`

// do sends one request and classifies the answer. rel is relative to the
// REST base and already escaped.
func (c *Client) do(ctx context.Context, op Op, method, rel string, body any) error {
	if c.urlErr != nil {
		return c.urlErr
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s body: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.rest+rel, rd)
	if err != nil {
		return fmt.Errorf("build %s request: %w", op, err)
	}
	// The original sends this header on every call, DELETE included.
	req.Header.Set("Content-Type", "application/json")
	if c.user != "" || c.password != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	c.counts[op].Add(1)
	log := c.log.WithFields(logrus.Fields{"op": string(op), "method": method, "url": c.redacted + rel})
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats the URL; keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &RequestError{Op: op, URL: c.redacted + rel, Err: err}
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return &RequestError{Op: op, URL: c.redacted + rel, Err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) // let the connection be reused
	log = log.WithField("status", resp.StatusCode)
	err = classify(op, resp.StatusCode, string(text))
	if errors.Is(err, errDuplicateWorkspace) {
		log.Warnf("Operation [%s] failed :Geoserver workspace already exists", op)
		return nil
	}
	if err == nil {
		log.Debugf("Operation [%s] was successful.", op)
	}
	return err
}

var (
	reWorkspaceExists   = regexp.MustCompile(`Workspace &#39;.*&#39; already exists`)
	reWorkspaceNotFound = regexp.MustCompile(`Workspace &#39;.*&#39; not found`)
	// errDuplicateWorkspace marks the tolerated duplicate-workspace answer.
	errDuplicateWorkspace = errors.New("workspace already exists")
)

// classify maps an answer to nil (success), errDuplicateWorkspace (tolerated),
// a *GeoserverError (final) or a *RequestError (retryable), in the order of
// cowbird.md §3.4.2; a 409 duplicate is tolerated like the 401 one.
func classify(op Op, status int, body string) error {
	intro := "Operation [" + string(op) + "] failed"
	gerr := func(msg string, kind error) error {
		return &GeoserverError{Op: op, Status: status, Msg: intro + msg, kind: kind}
	}
	switch {
	case status == http.StatusOK || status == http.StatusCreated:
		return nil
	case (status == http.StatusUnauthorized || status == http.StatusConflict) && reWorkspaceExists.MatchString(body):
		return errDuplicateWorkspace
	case status == http.StatusUnauthorized:
		return gerr(" because it lacks valid authentication credentials.", nil)
	case status == http.StatusForbidden && op == OpRemoveWorkspace:
		return gerr(" : Make sure `recurse` is set to `true` to delete workspace", nil)
	case status == http.StatusNotFound && reWorkspaceNotFound.MatchString(body):
		return gerr(": Geoserver workspace was not found", ErrNotFound)
	case status == http.StatusNotFound && strings.Contains(body, "No such data store"):
		return gerr(" :Geoserver datastore was not found", ErrNotFound)
	case status == http.StatusNotFound && strings.Contains(body, "No such feature type"):
		return gerr(" :Geoserver feature type was not found", ErrNotFound)
	case status == http.StatusInternalServerError:
		var kind error
		if strings.Contains(body, "already exists") {
			kind = ErrExists
		}
		if len(body) > maxQuoted {
			body = strings.ToValidUTF8(body[:maxQuoted], "") + "…"
		}
		return gerr(" : "+body, kind)
	default:
		return &RequestError{Op: op, Status: status}
	}
}
