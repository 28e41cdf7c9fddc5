package attestor

import "testing"

// TestHeldCaps: the check after DropPrivileges names every capability set
// left non-empty, and an unparsable one.
func TestHeldCaps(t *testing.T) {
	for _, tc := range []struct{ name, status, want string }{
		{"none", "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n", ""},
		{"variant B", "CapInh:\t0000000000000000\nCapPrm:\t00000000000000c0\nCapEff:\t00000000000000c0\nCapAmb:\t0000000000000000\n", "CapPrm 00000000000000c0, CapEff 00000000000000c0"},
		{"ambient", "CapInh:\t00000000000000c0\nCapAmb:\t00000000000000c0\n", "CapInh 00000000000000c0, CapAmb 00000000000000c0"},
		{"garbled", "CapEff:\tzz\n", "CapEff zz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := heldCaps([]byte(tc.status)); got != tc.want {
				t.Errorf("heldCaps = %q, want %q", got, tc.want)
			}
		})
	}
}
