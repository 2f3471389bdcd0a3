package geoserver

import (
	"context"
	"sync"
)

// wsLocks serializes the handler's work on one workspace. Every operation
// that reads a workspace's files or Magpie permissions and writes the other
// side (file events, permission events, user events) holds the workspace's
// lock from its first read to its last write, so that two of them never
// interleave: each starts from what the previous one left, and the last one
// to run leaves the files and Magpie in agreement whatever the order the
// events came in (issue 15, item 12). Different workspaces proceed in
// parallel. Entries live while someone holds or waits for them.
type wsLocks struct {
	mu sync.Mutex
	m  map[string]*wsLock
}

type wsLock struct {
	ch   chan struct{} // holds a token while locked
	refs int           // holders and waiters
}

// lock takes ws's lock, waiting until it is free or ctx is done. contended,
// when not nil, is called before waiting on a lock someone else holds.
func (l *wsLocks) lock(ctx context.Context, ws string, contended func()) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*wsLock{}
	}
	k := l.m[ws]
	if k == nil {
		k = &wsLock{ch: make(chan struct{}, 1)}
		l.m[ws] = k
	}
	k.refs++
	l.mu.Unlock()

	release := func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if k.refs--; k.refs == 0 {
			delete(l.m, ws)
		}
	}
	select {
	case k.ch <- struct{}{}:
	default:
		if contended != nil {
			contended()
		}
		select {
		case k.ch <- struct{}{}:
		case <-ctx.Done():
			release()
			return nil, ctx.Err()
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-k.ch
			release()
		})
	}, nil
}
