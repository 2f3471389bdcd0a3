package config

// Secret is a credential from the config. It prints as "<secret>" in every
// format (fmt, JSON, YAML) so it cannot leak into logs or API answers; use
// Reveal to read it.
type Secret string

const redacted = "<secret>"

// Reveal returns the secret in clear.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return redacted }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalYAML implements yaml.Marshaler.
func (Secret) MarshalYAML() (any, error) { return redacted, nil }
