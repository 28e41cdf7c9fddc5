package attestor_test

import (
	"fmt"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/svid"
)

// A manifest binds a task record to a process; its selectors are what the
// SPIRE plugin returns for that process (SPIRE adds the "agentid:" type).
func ExampleManifest_Selectors() {
	m := attestor.Manifest{
		PID:         4242,
		StartTime:   987654,
		UserNS:      4026531837, // /proc/self/ns/user at launch
		MntNS:       4026531841,
		Incarnation: "0123456789abcdef0123456789abcdef",
		Claims: svid.Claims{
			V: svid.Version, Agent: "researcher", Task: "T-42", Model: "openai/gpt-4o",
			Prompt:    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Scope:     []string{"kb:read"},
			Principal: "spiffe://example.org/user/alice",
			Deadline:  time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		},
	}
	fmt.Println(attestor.ManifestName(m.PID))
	for _, s := range m.Selectors() {
		fmt.Println(s)
	}
	// Output:
	// 4242.json
	// task:T-42
	// task:T-42:agent:researcher
	// task:T-42:model:openai/gpt-4o
	// task:T-42:prompt:sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
	// task:T-42:scope:kb:read
	// task:T-42:principal:spiffe://example.org/user/alice
	// task:T-42:depth:0
	// task:T-42:incarnation:0123456789abcdef0123456789abcdef
	// agent:researcher
	// model:openai/gpt-4o
	// prompt:sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
	// scope:kb:read
	// principal:spiffe://example.org/user/alice
	// depth:0
}

// The comm field of /proc/<pid>/stat is chosen by the process and may hold
// ") ": the fields are read after the last ')'.
func ExampleParseStat() {
	st, err := attestor.ParseStat([]byte("4242 (evil) R 1 (x) S 17 4242 4242 0 -1 4194560 113 0 0 0 0 0 0 0 20 0 1 0 987654 8577024 192\n"))
	fmt.Println(st.Comm, st.PPID, st.StartTime, err)
	// Output: evil) R 1 (x 17 987654 <nil>
}
