package policies

import "fmt"

// CheckGRPCMethodPattern reports whether a gRPC method pattern
// ("/kb.v1.KB/*", "/grpc.health.v1.Health/Check") can match a method the
// verifier decides: those are spelled as protobuf names them,
// "/package.Service/Method" in letters, digits, "_" and "." (the
// verifier's checkGRPCMethod), so a pattern whose literal parts hold any
// other byte ("%", "?", "-", a space) never matches and is refused.
func CheckGRPCMethodPattern(p string) error {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '/' || c == '*') {
			return fmt.Errorf("holds %q, which no gRPC method does (protobuf names: letters, digits, \"_\" and \".\")", p[i:i+1])
		}
	}
	return nil
}
