package recovery_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentid/agentid/internal/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type logged struct{ lines []string }

func (l *logged) log(msg string, kv ...any) { l.lines = append(l.lines, msg+" "+fmt.Sprint(kv...)) }

func check(t *testing.T, err error, l *logged, method string) {
	t.Helper()
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), method+": internal error") || strings.Contains(err.Error(), "boom") {
		t.Fatalf("error = %v, want Internal naming %s, not the panic value", err, method)
	}
	if len(l.lines) != 1 || !strings.HasPrefix(l.lines[0], recovery.Msg) || !strings.Contains(l.lines[0], "boom") || !strings.Contains(l.lines[0], "recovery_test.go") {
		t.Fatalf("log = %q, want one line with the panic and the stack", l.lines)
	}
}

func TestCall(t *testing.T) {
	var l logged
	handler := func() (err error) {
		defer recovery.Call(l.log, "Attest", &err)
		panic("boom")
	}
	check(t, handler(), &l, "Attest")

	ok := func() (err error) {
		defer recovery.Call(l.log, "Attest", &err)
		return errors.New("plain")
	}
	if err := ok(); err == nil || err.Error() != "plain" {
		t.Fatalf("a handler that does not panic: %v", err)
	}
}

func TestUnaryServerInterceptor(t *testing.T) {
	var l logged
	resp, err := recovery.UnaryServerInterceptor(l.log)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/pkg.Svc/Check"},
		func(context.Context, any) (any, error) { panic("boom") })
	if resp != nil {
		t.Fatalf("resp = %v", resp)
	}
	check(t, err, &l, "/pkg.Svc/Check")

	resp, err = recovery.UnaryServerInterceptor(l.log)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/pkg.Svc/Check"},
		func(context.Context, any) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Fatalf("no panic: %v, %v", resp, err)
	}
}

func TestStreamServerInterceptor(t *testing.T) {
	var l logged
	err := recovery.StreamServerInterceptor(l.log)(nil, nil, &grpc.StreamServerInfo{FullMethod: "/pkg.Svc/Watch"},
		func(any, grpc.ServerStream) error { panic("boom") })
	check(t, err, &l, "/pkg.Svc/Watch")
}
