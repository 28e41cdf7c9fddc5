// Package version holds the build's version, set by the Makefile with
// -ldflags "-X github.com/agentid/agentid/internal/version.Version=…".
package version

import "runtime/debug"

// Version is the agentid release, "dev" for builds outside the Makefile.
var Version = "dev"

// String returns the version and, when known, the VCS revision.
func String() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return Version + " (" + s.Value[:12] + ")"
			}
		}
	}
	return Version
}
