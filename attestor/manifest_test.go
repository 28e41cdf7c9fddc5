package attestor

import (
	"strings"
	"testing"
)

func TestManifestRoundTrip(t *testing.T) {
	for _, m := range []Manifest{
		{Incarnation: testIncarnation, PID: 4242, StartTime: 987654, UserNS: 4026531837, MntNS: 4026531841, Claims: testClaims()},
		{Incarnation: testIncarnation, PID: 1, StartTime: 1, UserNS: 1, MntNS: 2, ExeSHA256: strings.Repeat("0f", 32), Claims: testClaims()},
	} {
		data, err := m.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseManifest(data)
		if err != nil {
			t.Fatalf("ParseManifest(%s): %v", data, err)
		}
		if got.PID != m.PID || got.StartTime != m.StartTime || got.UserNS != m.UserNS || got.MntNS != m.MntNS || got.ExeSHA256 != m.ExeSHA256 || got.Incarnation != m.Incarnation || !got.Claims.Equal(m.Claims) {
			t.Errorf("round trip: %+v, want %+v", got, m)
		}
	}
}

func TestManifestJSON(t *testing.T) {
	m := Manifest{Incarnation: testIncarnation, PID: 4242, StartTime: 987654, UserNS: 4026531837, MntNS: 4026531841, Claims: testClaims()}
	data, _ := m.MarshalJSON()
	claims, _ := m.Claims.MarshalJSON()
	want := `{"version":2,"pid":4242,"start_time":987654,"user_ns":4026531837,"mnt_ns":4026531841,"incarnation":"` + testIncarnation + `","claims":` + string(claims) + `}`
	if string(data) != want {
		t.Errorf("JSON = %s\nwant   %s", data, want)
	}
}

func TestParseManifestErrors(t *testing.T) {
	claims, _ := testClaims().MarshalJSON()
	c := string(claims)
	inc := `"incarnation":"` + testIncarnation + `",`
	ns := `"user_ns":1,"mnt_ns":2,`
	tests := map[string]string{
		"not json":          `{`,
		"unknown key":       `{"version":2,"pid":1,"start_time":1,` + ns + `` + inc + `"claims":` + c + `,"root":true}`,
		"trailing data":     `{"version":2,"pid":1,"start_time":1,` + ns + `` + inc + `"claims":` + c + `}{}`,
		"version 1":         `{"version":1,"pid":1,"start_time":1,` + ns + `"claims":` + c + `}`,
		"version 1 + inc":   `{"version":1,"pid":1,"start_time":1,` + ns + `` + inc + `"claims":` + c + `}`,
		"version 3":         `{"version":3,"pid":1,"start_time":1,` + ns + `` + inc + `"claims":` + c + `}`,
		"no version":        `{"pid":1,"start_time":1,` + ns + `` + inc + `"claims":` + c + `}`,
		"no pid":            `{"version":2,"start_time":1,` + ns + `` + inc + `"claims":` + c + `}`,
		"no start time":     `{"version":2,"pid":1,` + ns + inc + `"claims":` + c + `}`,
		"zero start time":   `{"version":2,"pid":1,"start_time":0,` + ns + `` + inc + `"claims":` + c + `}`,
		"negative pid":      `{"version":2,"pid":-1,"start_time":1,` + ns + `` + inc + `"claims":` + c + `}`,
		"no claims":         `{"version":2,"pid":1,"start_time":1,` + ns + `` + inc[:len(inc)-1] + `}`,
		"bad claims":        `{"version":2,"pid":1,"start_time":1,` + ns + `` + inc + `"claims":{"v":1}}`,
		"bad exe digest":    `{"version":2,"pid":1,"start_time":1,` + ns + `"exe_sha256":"ABC",` + inc + `"claims":` + c + `}`,
		"upper-case exe":    `{"version":2,"pid":1,"start_time":1,` + ns + `"exe_sha256":"` + strings.Repeat("AB", 32) + `",` + inc + `"claims":` + c + `}`,
		"no incarnation":    `{"version":2,"pid":1,"start_time":1,` + ns + `"claims":` + c + `}`,
		"short incarnation": `{"version":2,"pid":1,"start_time":1,` + ns + `"incarnation":"0f0f","claims":` + c + `}`,
		"upper incarnation": `{"version":2,"pid":1,"start_time":1,` + ns + `"incarnation":"` + strings.Repeat("AB", 16) + `","claims":` + c + `}`,
		"no user_ns":        `{"version":2,"pid":1,"start_time":1,"mnt_ns":2,` + inc + `"claims":` + c + `}`,
		"no mnt_ns":         `{"version":2,"pid":1,"start_time":1,"user_ns":1,` + inc + `"claims":` + c + `}`,
		"zero user_ns":      `{"version":2,"pid":1,"start_time":1,"user_ns":0,"mnt_ns":2,` + inc + `"claims":` + c + `}`,
		"negative mnt_ns":   `{"version":2,"pid":1,"start_time":1,"user_ns":1,"mnt_ns":-2,` + inc + `"claims":` + c + `}`,
		"string user_ns":    `{"version":2,"pid":1,"start_time":1,"user_ns":"1","mnt_ns":2,` + inc + `"claims":` + c + `}`,
		"too large":         strings.Repeat(" ", MaxManifestSize+1),
	}
	for name, in := range tests {
		if m, err := ParseManifest([]byte(in)); err == nil {
			t.Errorf("%s: ParseManifest = %+v, want an error", name, m)
		}
	}
	// The same with every field right parses: the refusals are the
	// fields'.
	if _, err := ParseManifest([]byte(`{"version":2,"pid":1,"start_time":1,` + ns + inc + `"claims":` + c + `}`)); err != nil {
		t.Errorf("valid manifest: %v", err)
	}
}

func TestWriteManifestRefusesInvalid(t *testing.T) {
	dir := manifestDir(t)
	bad := testClaims()
	bad.Agent = "no spaces allowed"
	if _, err := WriteManifest(dir, Manifest{Incarnation: testIncarnation, PID: 1, StartTime: 1, UserNS: 1, MntNS: 2, Claims: bad}); err == nil {
		t.Error("WriteManifest accepted invalid claims")
	}
	if _, err := WriteManifest(dir, Manifest{Incarnation: testIncarnation, PID: 0, StartTime: 1, UserNS: 1, MntNS: 2, Claims: testClaims()}); err == nil {
		t.Error("WriteManifest accepted pid 0")
	}
}

// FuzzParseManifest: any bytes in a manifest file give a manifest or an
// error, never a panic, and an accepted manifest survives a round trip.
func FuzzParseManifest(f *testing.F) {
	m := Manifest{Incarnation: testIncarnation, PID: 4242, StartTime: 987654, UserNS: 4026531837, MntNS: 4026531841, ExeSHA256: strings.Repeat("0f", 32), Claims: testClaims()}
	data, err := m.MarshalJSON()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"version":1,"pid":1,"start_time":1,"claims":{"v":1}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		again, err := m.MarshalJSON()
		if err != nil {
			t.Fatalf("accepted manifest does not encode: %v", err)
		}
		m2, err := ParseManifest(again)
		if err != nil || m2.PID != m.PID || m2.StartTime != m.StartTime || m2.UserNS != m.UserNS || m2.MntNS != m.MntNS || m2.ExeSHA256 != m.ExeSHA256 || !m2.Claims.Equal(m.Claims) {
			t.Fatalf("round trip of %s: %+v, %v", again, m2, err)
		}
	})
}

// TestManifestVersion1Refused: a manifest written before incarnations
// names none; it is refused with a reason that says what to do, not matched
// without one (its process could match its task ID created again).
func TestManifestVersion1Refused(t *testing.T) {
	claims, _ := testClaims().MarshalJSON()
	_, err := ParseManifest([]byte(`{"version":1,"pid":1,"start_time":1,"claims":` + string(claims) + `}`))
	want := "attestor: manifest: version 1 names no incarnation (written by an agentid run before incarnations); relaunch the task"
	if err == nil || err.Error() != want {
		t.Errorf("version 1: %v, want %s", err, want)
	}
}
