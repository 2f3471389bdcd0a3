package handlers

// Fact is one thing an explanation (GET /explain, cowbird explain) checked
// when it was asked: an lstat, a readlink, a Magpie or GeoServer answer,
// never a guess. Handlers that explain their state return facts.
type Fact struct {
	// Check names what was checked (source, link, datastore mode, ...).
	Check string `json:"check"`
	// OK is false when this is why the user does not get what they expect,
	// or when the state differs from what the handler keeps.
	OK bool `json:"ok"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Fix, on a fact that is not OK, is what repairs it: a command when
	// there is one, else what to do instead.
	Fix string `json:"fix,omitempty"`
}
