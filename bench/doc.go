// Package bench compares agentid's policy engine with OPA (Rego) and
// cedar-go on the same generated policy sets and requests. It is a separate
// module so that OPA and cedar-go stay out of the main go.mod:
//
//	cd bench && go test -run '^$' -bench . -benchmem
package bench
