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

// ManifestVersion is the version of the manifest format this package reads
// and writes. Version 2 added the incarnation; version 1 manifests are
// refused (see [ParseManifest]). Version 2 manifests also name the
// process's user and mount namespaces; the first launchers of version 2
// (never released) did not, and their manifests are refused.
const ManifestVersion = 2

// MaxManifestSize bounds a manifest file: the claims' limit plus room for
// the envelope.
const MaxManifestSize = svid.MaxJSONSize + 1024

// Manifest binds a task record to one process: the launcher writes it for
// its own PID and start time, then execs the agent, which keeps both.
//
// On disk it is one JSON object, keys in this order:
//
//	{"version":2,"pid":4242,"start_time":987654,"user_ns":4026531837,"mnt_ns":4026531841,"exe_sha256":"<64 hex>","incarnation":"<32 hex>","claims":{…}}
//
// "exe_sha256" is optional; "claims" is the canonical svid claims JSON.
type Manifest struct {
	// PID is the launched process's ID; the file is named [ManifestName](PID).
	PID int
	// StartTime is field 22 of /proc/<pid>/stat at launch: clock ticks
	// since boot. A different start time means the PID was reused.
	StartTime uint64
	// UserNS and MntNS are the inode numbers of the process's user and
	// mount namespaces at launch (/proc/<pid>/ns/user and ns/mnt, as the
	// thread that execs the agent sees them): the attestor refuses the
	// process once it is in other ones. An agent in a user namespace of
	// its own can mount a filesystem (an overlay whose upper layer it
	// owns), run a binary from it and then change that binary's bytes
	// behind /proc/<pid>/exe, so that its exe: pins name a binary it does
	// not run (review 19). Both are required.
	UserNS, MntNS uint64
	// ExeSHA256 is the lower-case hex SHA-256 of the executable the
	// launcher exec'd (what /proc/<pid>/exe shows after the exec), or "".
	ExeSHA256 string
	// Incarnation is the incarnation of the task's registration entry the
	// process was launched for (svid.IncarnationSelectorPrefix): the
	// attestor emits it, so the process matches that entry only, not the
	// entry of its task ID created again after a revoke.
	Incarnation string
	// Claims is the task record.
	Claims svid.Claims
}

// ManifestName is the file name of the manifest of pid: "<pid>.json".
func ManifestName(pid int) string { return strconv.Itoa(pid) + ".json" }

// Selectors returns the selector values of the manifest's claims, without
// the selector type (SPIRE prefixes them with the plugin's name): the
// task-scoped layout that the registrar writes (svid.Claims.ScopedSelectors)
// and the incarnation (svid.ScopedIncarnationSelector), then the v1 layout
// (svid.Claims.Selectors, its task:<id> only once), so that entries written
// before the task-scoped layout still match. The v1 values go in the
// release after: entries of that layout have expired by then (a task lives
// at most its agent's max_ttl).
func (m Manifest) Selectors() []string {
	out := append(m.Claims.ScopedSelectors(), svid.ScopedIncarnationSelector(m.Claims.Task, m.Incarnation))
	for _, v := range m.Claims.Selectors() {
		if v != "task:"+m.Claims.Task {
			out = append(out, v)
		}
	}
	return out
}

// ExeSelectors returns the executable pin selector values for the
// executable digest sum, in both layouts (see Selectors).
func (m Manifest) ExeSelectors(sum string) []string {
	return []string{svid.ScopedExeSelector(m.Claims.Task, sum), svid.ExeSelector(sum)}
}

// Check validates the manifest: a positive PID and start time, a well-formed
// exe digest if any, a well-formed incarnation, and claims that pass
// [svid.Claims.Check].
func (m Manifest) Check() error {
	switch {
	case m.PID <= 0:
		return fmt.Errorf("attestor: manifest: pid %d is not positive", m.PID)
	case m.StartTime == 0:
		return errors.New("attestor: manifest: start_time missing")
	case m.UserNS == 0 || m.MntNS == 0:
		return errors.New("attestor: manifest: user_ns or mnt_ns missing (a manifest of an agentid run that did not record the agent's namespaces); relaunch the task")
	case m.ExeSHA256 != "" && !validHexDigest(m.ExeSHA256):
		return fmt.Errorf("attestor: manifest: exe_sha256 %q is not 64 lower-case hex digits", m.ExeSHA256)
	case !svid.ValidIncarnation(m.Incarnation):
		return fmt.Errorf("attestor: manifest: incarnation %q is not %d lower-case hex digits", m.Incarnation, svid.IncarnationLen)
	}
	if err := m.Claims.Check(); err != nil {
		return fmt.Errorf("attestor: manifest: %w", err)
	}
	return nil
}

// MarshalJSON returns the manifest's canonical JSON (no spaces, keys in the
// documented order). It does not validate; see [Manifest.Check].
func (m Manifest) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 512)
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, ManifestVersion, 10)
	b = append(b, `,"pid":`...)
	b = strconv.AppendInt(b, int64(m.PID), 10)
	b = append(b, `,"start_time":`...)
	b = strconv.AppendUint(b, m.StartTime, 10)
	b = append(b, `,"user_ns":`...)
	b = strconv.AppendUint(b, m.UserNS, 10)
	b = append(b, `,"mnt_ns":`...)
	b = strconv.AppendUint(b, m.MntNS, 10)
	if m.ExeSHA256 != "" {
		b = append(b, `,"exe_sha256":`...)
		b = strconv.AppendQuote(b, m.ExeSHA256)
	}
	b = append(b, `,"incarnation":`...)
	b = strconv.AppendQuote(b, m.Incarnation)
	b = append(b, `,"claims":`...)
	b = m.Claims.AppendJSON(b)
	return append(b, '}'), nil
}

// manifestKeys are the keys of a manifest, spelled as they must be.
var manifestKeys = []string{"version", "pid", "start_time", "user_ns", "mnt_ns", "exe_sha256", "incarnation", "claims"}

// manifestJSON is the decoding shape; pointers tell missing from zero.
type manifestJSON struct {
	Version     *int            `json:"version"`
	PID         *int            `json:"pid"`
	StartTime   *uint64         `json:"start_time"`
	UserNS      *uint64         `json:"user_ns"`
	MntNS       *uint64         `json:"mnt_ns"`
	ExeSHA256   string          `json:"exe_sha256"`
	Incarnation string          `json:"incarnation"`
	Claims      json.RawMessage `json:"claims"`
}

// ParseManifest decodes a manifest strictly: unknown keys, a key repeated
// or spelled in another case (anywhere in the document), trailing data, a
// version other than [ManifestVersion], missing fields and claims that fail
// [svid.Parse] are errors. A version 1 manifest (written by a launcher
// before incarnations) is refused: it names no incarnation, and a process
// without one could match the entry of its task ID created again after a
// revoke; relaunch the task with this release's `agentid run`.
func ParseManifest(data []byte) (Manifest, error) {
	if len(data) > MaxManifestSize {
		return Manifest{}, fmt.Errorf("attestor: manifest: %d bytes, at most %d", len(data), MaxManifestSize)
	}
	if err := checkObjectKeys("manifest", data, manifestKeys...); err != nil {
		return Manifest{}, err
	}
	var raw manifestJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Manifest{}, fmt.Errorf("attestor: manifest: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, errors.New("attestor: manifest: trailing data after the object")
	}
	switch {
	case raw.Version != nil && *raw.Version == 1:
		return Manifest{}, errors.New("attestor: manifest: version 1 names no incarnation (written by an agentid run before incarnations); relaunch the task")
	case raw.Version == nil || *raw.Version != ManifestVersion:
		return Manifest{}, fmt.Errorf("attestor: manifest: version missing or not %d", ManifestVersion)
	case raw.PID == nil || raw.StartTime == nil || raw.Claims == nil:
		return Manifest{}, errors.New("attestor: manifest: pid, start_time and claims are required")
	case raw.UserNS == nil || raw.MntNS == nil:
		return Manifest{}, errors.New("attestor: manifest: user_ns and mnt_ns are required (written by an agentid run that did not record the agent's namespaces); relaunch the task")
	}
	claims, err := svid.Parse(raw.Claims)
	if err != nil {
		return Manifest{}, fmt.Errorf("attestor: manifest: claims: %w", err)
	}
	m := Manifest{PID: *raw.PID, StartTime: *raw.StartTime, UserNS: *raw.UserNS, MntNS: *raw.MntNS, ExeSHA256: raw.ExeSHA256, Incarnation: raw.Incarnation, Claims: claims}
	return m, m.Check()
}

func validHexDigest(s string) bool { return svid.ValidSHA256Hex(s) }
