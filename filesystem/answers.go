package filesystem

import (
	"sync"
	"time"
)

// DefaultAnswerMaxAge is how long a full reconcile with
// ReconcileOptions.ReuseAnswers may reuse Magpie's answer of an earlier one
// (Options.AnswerMaxAge).
const DefaultAnswerMaxAge = time.Hour

// answers keeps, across full reconciles, Magpie's answers about who may
// read which route, so that the periodic reconcile asks Magpie only for
// what changed: an answer is dropped by any user or permission event of
// its user (every one for a group's permission), and is reused for at most
// Options.AnswerMaxAge after Magpie gave it (a change in Magpie that sends
// no webhook, such as a group membership, is seen after that long).
//
// Events and runs overlap: an answer asked before a drop and received
// after it is not kept (each answer carries the drop count, epoch, of when
// it was asked).
type answers struct {
	mu     sync.Mutex
	byUser map[string]map[int]answer // user -> route id -> answer
	epoch  uint64                    // drops so far
	// dropped is the epoch of each user's last drop; all that of the last
	// drop of everything.
	dropped map[string]uint64
	all     uint64
}

// answer is whether a user may read a route, and when Magpie was asked.
type answer struct {
	read bool
	at   time.Time
}

// asking returns the epoch to pass to keep for an answer asked now.
func (a *answers) asking() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.epoch
}

// keep stores the answer about k asked at at, in epoch, unless an event
// dropped k's user since.
func (a *answers) keep(k permKey, read bool, at time.Time, epoch uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if epoch < a.all || epoch < a.dropped[k.user] {
		return
	}
	if a.byUser == nil {
		a.byUser = map[string]map[int]answer{}
	}
	m := a.byUser[k.user]
	if m == nil {
		m = map[int]answer{}
		a.byUser[k.user] = m
	}
	m[k.resID] = answer{read: read, at: at}
}

// get returns the kept answer about k if it is younger than maxAge.
func (a *answers) get(k permKey, maxAge time.Duration) (read, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ans, ok := a.byUser[k.user][k.resID]
	if !ok || time.Since(ans.at) >= maxAge {
		return false, false
	}
	return ans.read, true
}

// drop forgets the answers about user, or every answer when user is "".
func (a *answers) drop(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.epoch++
	if user == "" {
		a.all = a.epoch
		clear(a.byUser)
		clear(a.dropped) // older than all
		return
	}
	if a.dropped == nil {
		a.dropped = map[string]uint64{}
	}
	a.dropped[user] = a.epoch
	delete(a.byUser, user)
}

// size is the number of answers kept.
func (a *answers) size() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, m := range a.byUser {
		n += len(m)
	}
	return n
}
