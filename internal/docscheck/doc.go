// Package docscheck holds the test that every HCL snippet in the
// project's Markdown (README.md, docs/, examples/) is valid: it parses,
// and policies, issuance policies and verifier configurations load with
// the same code the binaries use. A snippet that only shows a shape
// writes it as valid HCL, with the variable parts in comments.
package docscheck
