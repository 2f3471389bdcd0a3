package hooks

import (
	"context"
	"fmt"
	"sync"
)

// queue runs the sessions of one user one at a time, in arrival order, and
// at most slots sessions at once overall.
type queue struct {
	mu    sync.Mutex
	tails map[string]chan struct{} // per user: closed when the last arrival is done
	slots chan struct{}
}

func newQueue(parallel int) *queue {
	return &queue{tails: map[string]chan struct{}{}, slots: make(chan struct{}, parallel)}
}

// ticket is a place in a user's line.
type ticket struct {
	q    *queue
	user string
	prev <-chan struct{} // the previous arrival's done; nil when first
	done chan struct{}
}

// enqueue takes the next place in user's line.
func (q *queue) enqueue(user string) *ticket {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := &ticket{q: q, user: user, prev: q.tails[user], done: make(chan struct{})}
	q.tails[user] = t.done
	return t
}

// wait blocks until every earlier arrival of the user is done and a slot is
// free. On success the caller must call release; on error the ticket
// releases itself once its turn has come, so the line keeps its order.
func (t *ticket) wait(ctx context.Context) error {
	if t.prev != nil {
		select {
		case <-t.prev:
		case <-ctx.Done():
			go func() {
				<-t.prev
				t.leave()
			}()
			return fmt.Errorf("wait for earlier hooks of %q: %w", t.user, ctx.Err())
		}
	}
	select {
	case t.q.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		t.leave()
		return fmt.Errorf("wait for a free hook slot: %w", ctx.Err())
	}
}

// release frees the slot and lets the user's next arrival run.
func (t *ticket) release() {
	<-t.q.slots
	t.leave()
}

// leave ends the ticket's turn.
func (t *ticket) leave() {
	t.q.mu.Lock()
	if t.q.tails[t.user] == t.done {
		delete(t.q.tails, t.user)
	}
	t.q.mu.Unlock()
	close(t.done)
}
