package svid

import (
	"errors"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TaskID returns the SPIFFE ID of a task: spiffe://<td>/agent/<agent>/task/<task>.
func TaskID(td spiffeid.TrustDomain, agent, task string) (spiffeid.ID, error) {
	if !ValidName(agent) {
		return spiffeid.ID{}, fail(ReasonInvalidField, "agent %q is not [A-Za-z0-9._-]{1,128}", agent)
	}
	if !ValidName(task) {
		return spiffeid.ID{}, fail(ReasonInvalidField, "task %q is not [A-Za-z0-9._-]{1,128}", task)
	}
	return spiffeid.FromSegments(td, "agent", agent, "task", task)
}

// ParseTaskID returns the agent and task names of a task SPIFFE ID, and
// ok=false when id does not have the shape /agent/<agent>/task/<task>.
func ParseTaskID(id spiffeid.ID) (agent, task string, ok bool) {
	return splitTaskPath(id.Path())
}

// IsTaskID reports whether id has the shape of a task SPIFFE ID.
func IsTaskID(id spiffeid.ID) bool {
	_, _, ok := ParseTaskID(id)
	return ok
}

func splitTaskPath(p string) (agent, task string, ok bool) {
	rest, found := strings.CutPrefix(p, "/agent/")
	if !found {
		return "", "", false
	}
	agent, task, found = strings.Cut(rest, "/task/")
	if !found || !ValidName(agent) || !ValidName(task) {
		return "", "", false
	}
	return agent, task, true
}

var errNotTaskID = errors.New("not a task SPIFFE ID (spiffe://<td>/agent/<agent>/task/<task>)")

func parseTaskIDString(s string) (spiffeid.ID, string, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, "", err
	}
	agent, _, ok := ParseTaskID(id)
	if !ok {
		return spiffeid.ID{}, "", errNotTaskID
	}
	return id, agent, nil
}
