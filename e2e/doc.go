// Package e2e holds the end-to-end tests of agentid on a real SPIRE 1.13.3
// (server and agent from `make spire`, started per test by
// internal/spiretest) with the agentid attestor and composer plugins loaded
// through plugin_cmd and plugin_checksum, the agentid CLI and daemons built
// from this repository, and real processes launched with `agentid run`.
package e2e
