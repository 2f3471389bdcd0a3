package filesystem

import (
	"testing"
	"time"
)

// An answer asked before an event dropped its user, and received after,
// is not kept; nor is any answer asked before a drop of everything.
func TestAnswersDroppedWhileAsked(t *testing.T) {
	var a answers
	alice, bob := permKey{"alice", 1}, permKey{"bob", 1}
	now := time.Now()

	epoch := a.asking()
	a.drop("alice") // a permission event while the answers were asked
	a.keep(alice, true, now, epoch)
	a.keep(bob, true, now, epoch)
	if _, ok := a.get(alice, time.Hour); ok {
		t.Error("alice's answer asked before her event was kept")
	}
	if read, ok := a.get(bob, time.Hour); !ok || !read {
		t.Errorf("bob's answer: %v %v, want kept", read, ok)
	}

	epoch = a.asking()
	a.keep(alice, false, now, epoch) // asked after the event: kept
	if read, ok := a.get(alice, time.Hour); !ok || read {
		t.Errorf("alice's answer asked after her event: %v %v, want kept (false)", read, ok)
	}

	epoch = a.asking()
	a.drop("") // a group's event
	if a.size() != 0 {
		t.Errorf("%d answers kept after a drop of everything", a.size())
	}
	a.keep(bob, true, now, epoch)
	if _, ok := a.get(bob, time.Hour); ok {
		t.Error("an answer asked before a drop of everything was kept")
	}
	a.keep(bob, true, now.Add(-2*time.Hour), a.asking())
	if _, ok := a.get(bob, time.Hour); ok {
		t.Error("an answer older than the maximum age was reused")
	}
}
