// Package policies is agentid's policy language and engine: operators write
// HCL files that decide which agent actions are admissible.
//
// A policy directory holds .hcl files with variable and rule blocks (test
// files, *_test.hcl or under tests/, hold test cases). [Load] parses,
// checks and compiles them all-or-nothing into an immutable [Set]: patterns
// are parsed, rules are indexed by action and agent, and condition
// expressions are type-checked once. [Set.Decide] answers one [Input] with
// a [Decision] that names the deciding rules; [Set.Explain] also lists why
// every rule considered did or did not match. Decisions are default deny,
// and any matching deny rule wins over every allow rule.
//
// HTTP paths are decided in the canonical form that the verifier accepts
// (unreserved characters, sub-delims but ";", ":" and "@" literal, every
// other byte "%XX" in upper-case hex, no dot or empty segments), so path
// patterns must be written in it: loading refuses any other spelling and
// names the canonical one ([CheckPathPattern]).
//
// Matching costs time linear in the request, whatever the policy: patterns
// run as bit-parallel automata without backtracking, condition expressions
// whose cost would grow faster than the request are refused at load, and
// actions longer than [MaxPathLen], [MaxMethodLen] or [MaxNameLen] are
// denied before matching ([Action.CheckLimits], [Decision.Limit]).
//
// A [Store] holds the current Set for concurrent readers and swaps it
// atomically on [Store.Reload], keeping the last good set when the new
// sources have errors. [Load] reads a directory that a deploy may be
// changing (a symbolic link flipped to a new release, a Kubernetes
// ConfigMap's ..data swapped) as one whole release: it resolves the
// directory once, reads everything from there, and starts again when
// what it read changed meanwhile.
//
// The language is documented in docs/policy.md.
package policies
