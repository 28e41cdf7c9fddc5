package server

import (
	"context"
	"errors"
	"strings"

	"github.com/agentid/agentid/registrar"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the domain of the errdetails.ErrorInfo attached to
// refusals; its Reason is the registrar.Reason's name ("scope_escalation")
// and its metadata "rule" the policy block that decided, if any.
const ErrorDomain = "registrar.agentid"

// toStatus maps a registrar error to a gRPC status. A refusal gets its
// reason's code and the message "<reason>: <detail> (rule file:line)", so
// that a client can print it as is, plus an ErrorInfo detail to branch on.
// Transport errors keep Unavailable, DeadlineExceeded and Canceled; other
// failures are Internal.
func toStatus(err error) error {
	var re *registrar.Error
	if errors.As(err, &re) {
		st := status.New(re.Reason.Code(), strings.TrimPrefix(re.Error(), "registrar: "))
		info := &errdetails.ErrorInfo{Reason: re.Reason.String(), Domain: ErrorDomain}
		if re.Rule != "" {
			info.Metadata = map[string]string{"rule": re.Rule}
		}
		if withInfo, derr := st.WithDetails(info); derr == nil {
			st = withInfo
		}
		return st.Err()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return status.Error(st.Code(), err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// ReasonOf returns the registrar reason a task API error carries (from its
// ErrorInfo detail), or 0.
func ReasonOf(err error) registrar.Reason {
	st, ok := status.FromError(err)
	if !ok {
		return 0
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return reasonByName[info.GetReason()]
		}
	}
	return 0
}

var reasonByName = func() map[string]registrar.Reason {
	m := map[string]registrar.Reason{}
	for r := registrar.Reason(1); !strings.HasPrefix(r.String(), "reason("); r++ {
		m[r.String()] = r
	}
	return m
}()
