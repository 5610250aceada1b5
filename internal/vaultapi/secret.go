package vaultapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// Redacted is what a Secret prints as.
const Redacted = "[REDACTED]"

// Secret holds an enrollment token or an agent credential. Every way of
// printing it (fmt verbs, slog, encoding/json) yields "[REDACTED]"; only
// Reveal gives the value. UnmarshalJSON accepts the real value, so a server
// can decode a request into a Secret field.
type Secret string

// Reveal returns the secret value. Call it only where the value must leave
// the process (the Authorization header, the enroll request body) or be
// parsed.
func (s Secret) Reveal() string { return string(s) }

// String returns "[REDACTED]".
func (s Secret) String() string { return Redacted }

// GoString returns "[REDACTED]", so %#v does not leak either.
func (s Secret) GoString() string { return Redacted }

// LogValue returns "[REDACTED]" for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON writes "[REDACTED]". Use EnrollRequest.Encode to send a token.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(Redacted) }

// UnmarshalJSON reads a JSON string into the secret.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = Secret(v)
	return nil
}

// Format makes every fmt verb, including %x and %q, print "[REDACTED]".
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(Redacted)) }
