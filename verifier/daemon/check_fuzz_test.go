package daemon

import (
	"strings"
	"testing"
)

// FuzzParseCheckRequest: no check API body crashes the parser, and a
// "request" it accepts always agrees with an http action.
func FuzzParseCheckRequest(f *testing.F) {
	f.Add(`{"certificate":"x","action":{"kind":"http","method":"POST","path":"/kb/pay"},"request":{"method":"POST","target_uri":"https://kb/kb/pay","headers":{"signature":"agentid=:AA==:"},"body":"e30="}}`)
	f.Add(`{"jwt":"x","action":{"Kind":"http","Method":"GET","Path":"/"},"request":{"method":"GET","target_uri":"https://kb"}}`)
	f.Add(`{"request":{"headers":{"a":"1","A":"2"}}}`)
	f.Add(`{"request":[]}`)
	f.Fuzz(func(t *testing.T, body string) {
		q, err := parseCheckRequest([]byte(body))
		if err != nil || q.Signed == nil || q.Action.Kind != "http" {
			return
		}
		if q.Signed.Message.Method != q.Action.Method || targetPath(q.Signed.Message.TargetURI) != q.Action.Path {
			t.Fatalf("accepted a request that is not the action: %+v %+v", q.Signed.Message, q.Action)
		}
		if !strings.Contains(q.Signed.Message.TargetURI, "://") {
			t.Fatalf("accepted a relative target %q", q.Signed.Message.TargetURI)
		}
	})
}
