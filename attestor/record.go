package attestor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/agentid/agentid/svid"
)

// TaskRecord is what a launcher needs to know of a task: its claims and the
// incarnation of its registration entry. `agentid task create --output`
// writes it and `agentid run --task-file` reads it. On disk it is one JSON
// object, keys in this order:
//
//	{"incarnation":"<32 hex>","claims":{…}}
//
// "claims" is the canonical svid claims JSON.
type TaskRecord struct {
	// Incarnation names the task's registration entry
	// (svid.IncarnationSelectorPrefix).
	Incarnation string
	// Claims is the task's record as its SVIDs carry it.
	Claims svid.Claims
}

// Check validates the record: a well-formed incarnation and claims that
// pass [svid.Claims.Check].
func (r TaskRecord) Check() error {
	if !svid.ValidIncarnation(r.Incarnation) {
		return fmt.Errorf("attestor: task record: incarnation %q is not %d lower-case hex digits", r.Incarnation, svid.IncarnationLen)
	}
	if err := r.Claims.Check(); err != nil {
		return fmt.Errorf("attestor: task record: %w", err)
	}
	return nil
}

// MarshalJSON returns the record's canonical JSON. It does not validate;
// see [TaskRecord.Check].
func (r TaskRecord) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 512)
	b = append(b, `{"incarnation":`...)
	b = strconv.AppendQuote(b, r.Incarnation)
	b = append(b, `,"claims":`...)
	b = r.Claims.AppendJSON(b)
	return append(b, '}'), nil
}

// ErrNoIncarnation is returned by [ParseTaskRecord] for a record that is
// a bare claims object: the format before incarnations.
var ErrNoIncarnation = errors.New("attestor: task record: claims without an incarnation (a record written before incarnations, or by hand): a process launched without its entry's incarnation matches no entry; write the record again with `agentid task create --output` or `agentid task show --output` (a task created before incarnations must be created again)")

// ParseTaskRecord decodes a task record strictly: unknown keys, a key
// repeated or spelled in another case (anywhere in the document), trailing
// data, a missing or malformed incarnation and claims that fail
// [svid.Parse] are errors; a bare claims object is [ErrNoIncarnation].
func ParseTaskRecord(data []byte) (TaskRecord, error) {
	if len(data) > MaxManifestSize {
		return TaskRecord{}, fmt.Errorf("attestor: task record: %d bytes, at most %d", len(data), MaxManifestSize)
	}
	if _, err := svid.Parse(data); err == nil {
		return TaskRecord{}, ErrNoIncarnation
	}
	if err := checkObjectKeys("task record", data, "incarnation", "claims"); err != nil {
		return TaskRecord{}, err
	}
	var raw struct {
		Incarnation *string         `json:"incarnation"`
		Claims      json.RawMessage `json:"claims"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return TaskRecord{}, fmt.Errorf("attestor: task record: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return TaskRecord{}, errors.New("attestor: task record: trailing data after the object")
	}
	if raw.Incarnation == nil || raw.Claims == nil {
		return TaskRecord{}, errors.New("attestor: task record: incarnation and claims are required")
	}
	c, err := svid.Parse(raw.Claims)
	if err != nil {
		return TaskRecord{}, fmt.Errorf("attestor: task record: claims: %w", err)
	}
	r := TaskRecord{Incarnation: *raw.Incarnation, Claims: c}
	return r, r.Check()
}
