package attestor

import (
	"errors"
	"fmt"
)

// ErrNoProcess is returned when the PID names no running process.
var ErrNoProcess = errors.New("no such process")

// Reason says why a manifest was refused or skipped.
type Reason int

const (
	// ReasonUnsafeDir: the manifest directory is a symlink or not a
	// directory, is owned by a uid outside the allowed set, or is
	// world-writable.
	ReasonUnsafeDir Reason = iota + 1
	// ReasonNotRegular: the manifest is a symlink, a FIFO, a directory or
	// anything else than a regular file.
	ReasonNotRegular
	// ReasonOwner: the manifest's owner uid is not in the allowed set.
	ReasonOwner
	// ReasonWritable: the manifest is writable by its group or by others.
	ReasonWritable
	// ReasonHardLinked: the manifest has more than one link (manifests are
	// written by rename and have exactly one).
	ReasonHardLinked
	// ReasonMalformed: not a manifest: bad JSON, unknown keys, an unknown
	// version, too large, or claims that fail svid's checks.
	ReasonMalformed
	// ReasonPIDMismatch: the manifest's "pid" disagrees with its file name.
	ReasonPIDMismatch
	// ReasonStale: the manifest's start time is not the process's: the PID
	// was reused. The manifest is skipped (and removed), not an attack.
	ReasonStale
	// ReasonExpired: the task's deadline has passed.
	ReasonExpired
	// ReasonExeMismatch: require_exe_sha256 is set and the process's
	// executable does not match the manifest's exe_sha256 (or the manifest
	// has none, or the executable is larger than max_exe_bytes).
	ReasonExeMismatch
	// ReasonAgentWritesDir: the attested process (or the ancestor whose
	// manifest it inherits) could create, replace, rename or delete
	// manifests: one of its uids is root or owns the writable directory,
	// one of its groups is the directory's group with g+w, or it holds a
	// capability that bypasses file permissions. Such a process could have
	// written its own manifest.
	ReasonAgentWritesDir
	// ReasonAgentOwnsManifests: one of the process's uids is an allowed
	// manifest owner (allowed_owner_uids), e.g. the owner of its own
	// manifest: it could rewrite it.
	ReasonAgentOwnsManifests
	// ReasonNamespace: the process that holds the manifest is no longer in
	// the user or mount namespace it was launched in (the manifest's
	// user_ns and mnt_ns), or they cannot be read. In a user namespace of
	// its own an agent can mount a filesystem whose files it can change
	// while they run, so its executable pins would not name what it runs.
	ReasonNamespace
)

var reasonNames = [...]string{
	ReasonUnsafeDir:   "unsafe manifest directory",
	ReasonNotRegular:  "not a regular file",
	ReasonOwner:       "owner not allowed",
	ReasonWritable:    "group- or world-writable",
	ReasonHardLinked:  "hard-linked",
	ReasonMalformed:   "malformed",
	ReasonPIDMismatch: "pid mismatch",
	ReasonStale:       "stale (start time mismatch)",
	ReasonExpired:     "task expired",
	ReasonExeMismatch: "executable digest mismatch",
	// The warning the issue names: operators grep for it.
	ReasonAgentWritesDir:     "agent process can write the manifest directory",
	ReasonAgentOwnsManifests: "agent process can own manifests",
	ReasonNamespace:          "namespace changed since launch",
}

// String returns a short lower-case name, stable for logs.
func (r Reason) String() string {
	if r > 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// ManifestError is a manifest the attestor refused, in the style of
// x509.CertificateInvalidError.
type ManifestError struct {
	Path   string
	Reason Reason
	Detail string
}

func (e *ManifestError) Error() string {
	s := "attestor: manifest " + e.Path + " refused: " + e.Reason.String()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is makes errors.Is(err, &ManifestError{Reason: r}) match on the reason.
func (e *ManifestError) Is(target error) bool {
	t, ok := target.(*ManifestError)
	return ok && t.Reason == e.Reason
}

func refuse(path string, r Reason, format string, args ...any) *ManifestError {
	return &ManifestError{Path: path, Reason: r, Detail: fmt.Sprintf(format, args...)}
}
