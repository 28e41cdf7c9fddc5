package verifier

import (
	"encoding/json"
	"fmt"
)

// MCPMethodListen is SEP-2575's subscriptions/listen (MCP 2026-07-28): a
// stream of the notifications named in params.notifications, among them
// updates of the resources in resourceSubscriptions.
const MCPMethodListen = "subscriptions/listen"

// MaxListenURIs bounds the resource subscriptions of one
// subscriptions/listen (each is a decision and an audit record).
const MaxListenURIs = 256

// MCPListenURIs is params.notifications.resourceSubscriptions of a
// subscriptions/listen body that ParseMCP accepted (no duplicate or
// case-variant keys at any depth); none when absent. Each is decided as
// resources/subscribe of it.
func MCPListenURIs(body []byte) ([]string, *InputError) {
	bad := func(format string, args ...any) ([]string, *InputError) {
		return nil, &InputError{What: "MCP subscriptions", Detail: fmt.Sprintf(format, args...)}
	}
	var env struct {
		Params struct {
			Notifications *struct {
				ResourceSubscriptions json.RawMessage `json:"resourceSubscriptions"`
			} `json:"notifications"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &env) != nil {
		return bad(`params."notifications" must be an object`)
	}
	n := env.Params.Notifications
	if n == nil || len(n.ResourceSubscriptions) == 0 || string(n.ResourceSubscriptions) == "null" {
		return nil, nil
	}
	var uris []string
	if json.Unmarshal(n.ResourceSubscriptions, &uris) != nil {
		return bad(`params.notifications."resourceSubscriptions" must be an array of URIs`)
	}
	if len(uris) > MaxListenURIs {
		return bad("more than %d resource subscriptions in one subscriptions/listen", MaxListenURIs)
	}
	for _, u := range uris {
		if u == "" || len(u) > MaxNameLen {
			return bad("a resource subscription must be a URI of 1 to %d bytes", MaxNameLen)
		}
	}
	return uris, nil
}
