package geoserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/safefs"
)

// ResyncPath implements handlers.PathResyncer for a watched datastore
// directory, whose file events were lost (events while the daemon was
// down, an inotify overflow): each .shp that GeoServer does not publish is
// handled as a created one, each feature type without its .shp as a
// deleted .shp. Layers already in agreement are left alone, Magpie
// permissions included (a change made there meanwhile is kept). Any other
// path gives false, nil. covered is always false: the resync does not apply
// a .shp's mode to Magpie as its modified event does, so the monitor must
// still deliver the events it holds.
func (h *Handler) ResyncPath(ctx context.Context, path string) (bool, error) {
	t, ok := h.classify(path)
	if !ok || t.entry != "" {
		return false, nil
	}
	unlock, err := h.lock(ctx, t.ws)
	if err != nil {
		return false, fmt.Errorf("resync %s: %w", path, err)
	}
	defer unlock()
	if err := h.resync(ctx, t.ws); err != nil {
		return false, fmt.Errorf("resync %s: %w", path, err)
	}
	return false, nil
}

// resync brings ws's GeoServer layers in line with the .shp files of its
// datastore directory; ws's lock is held. A directory gone is only
// logged (deleting it is not supported: see handleFile).
func (h *Handler) resync(ctx context.Context, ws string) error {
	root, err := h.wsRoot()
	if err != nil {
		return err
	}
	shps, err := shapefilesIn(root, ws)
	if errors.Is(err, fs.ErrNotExist) {
		h.log.WithField("user", ws).Warn("shapefile datastore directory gone: nothing resynced")
		return nil
	}
	if err != nil {
		return err
	}
	pending := h.jobs.Status().Pending // before the listing: see published
	types, err := h.gs.FeatureTypes(ctx, ws)
	if err != nil {
		return err
	}
	have := published(ws, types, pending)
	var errs []error
	for _, layer := range slices.Sorted(maps.Keys(shps)) {
		if !have[layer] {
			h.log.WithFields(logrus.Fields{"user": ws, "layer": layer}).Info("resync: publishing a shapefile not published yet")
			errs = append(errs, wrapLayer("publish", layer, h.shapefileCreated(ctx, root, ws, layer)))
		}
	}
	for _, layer := range slices.Sorted(maps.Keys(have)) {
		if !shps[layer] {
			h.log.WithFields(logrus.Fields{"user": ws, "layer": layer}).Info("resync: removing a layer whose .shp is gone")
			errs = append(errs, wrapLayer("remove", layer, h.shapefileDeleted(ctx, root, ws, layer)))
		}
	}
	return errors.Join(errs...)
}

// shapefilesIn returns the layers of the .shp entries directly in ws's
// datastore directory, whatever their type (listing follows no symlink;
// shapefileCreated skips what is not a regular file).
func shapefilesIn(root *safefs.Root, ws string) (map[string]bool, error) {
	entries, err := root.ReadDir(datastoreRel(ws))
	if err != nil {
		return nil, fmt.Errorf("list the datastore directory: %w", err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		if layer, ok := layerOf(e.Name); ok && safefs.ValidName(e.Name) == nil {
			out[layer] = true
		}
	}
	return out, nil
}

// published returns the layers of ws that GeoServer has once its pending
// jobs have run: the feature types listed, changed by the publish and
// remove steps still to run, in queue order (a shapefile's jobs run in
// that order). pending must be read before the listing, so that a job
// finishing in between is seen in one or the other. Feature types whose
// name is no usable file name are left out: they are not the handler's.
func published(ws string, types []string, pending []Job) map[string]bool {
	out := make(map[string]bool, len(types))
	for _, name := range types {
		if safefs.ValidName(name+".shp.xml") == nil {
			out[name] = true
		}
	}
	for _, j := range pending {
		for _, s := range j.Steps[min(j.Next, len(j.Steps)):] {
			switch {
			case s.Workspace != ws:
			case s.Kind == StepPublishShapefile:
				out[s.Shapefile] = true
			case s.Kind == StepRemoveShapefile:
				delete(out, s.Shapefile)
			}
		}
	}
	return out
}

// wrapLayer names layer and what was done to it in err, if any.
func wrapLayer(what, layer string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s layer %q: %w", what, layer, err)
}

var _ handlers.PathResyncer = (*Handler)(nil)
