package registrar

import (
	"encoding/base32"
	"io"
	"strings"
)

var taskIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTaskID returns a random task ID: "t-" and 20 lower-case base32
// characters (100 bits) read from rand. It is URL-safe and a valid
// svid name.
func NewTaskID(rand io.Reader) (string, error) {
	var b [13]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", wrapErr("task ID", err)
	}
	return "t-" + strings.ToLower(taskIDEncoding.EncodeToString(b[:])[:20]), nil
}
