// Package pluginsafe keeps a SPIRE plugin process alive through a bug in
// one of its RPC handlers. The plugin SDK serves handlers on go-plugin's
// default gRPC server, which takes no interceptors, so each handler defers
// Recover itself.
package pluginsafe

import (
	"fmt"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Recover, deferred by an RPC handler with a named error result, turns a
// panic into an Internal error for that one call and an error log line
// with the stack, instead of letting it kill the plugin process (which
// would fail every later call until SPIRE is restarted):
//
//	func (p *Plugin) Attest(ctx context.Context, req *Req) (_ *Resp, err error) {
//		defer pluginsafe.Recover(p.logger(), "Attest", &err)
//		…
//	}
func Recover(log hclog.Logger, method string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	log.Error("Recovered from a panic in a plugin call; please report it", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*err = status.Errorf(codes.Internal, "agentid plugin: %s: internal error: %v", method, r)
}
