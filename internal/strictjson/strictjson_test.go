package strictjson

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{`{"a":1,"b":{"c":[1,2,{"d":"e"}]}}`, ""},
		{`{"a":1,"a":2}`, "duplicate key"},
		{`{"name":1,"Name":2}`, "same key"},
		{`{"params":1,"param\u017f":2}`, "same key"},
		{`{"k":1,"\u212a":2}`, "same key"},
		{`{"x":{"y":{"q":1,"Q":2}}}`, "same key"},
		{`{"a":1} {"b":2}`, "after top-level value"},
		{`[[[[[[[[[[1]]]]]]]]]]`, "nested deeper"},
		{`{"a":`, "unexpected end"},
		{"{\"a\xff\":1}", "invalid UTF-8"},
		// a lone surrogate escape: encoding/json reads U+FFFD, JSON.parse
		// keeps the surrogate — two readers, two strings
		{`{"name":"x\ud800"}`, "lone surrogate"},
		{`{"name":"x\uDC00y"}`, "lone surrogate"},
		{`{"name":"\ud800\u0041"}`, "lone surrogate"},
		{`{"n\udbff":1}`, "lone surrogate"},
		{`{"name":"x\ud83d\ude00"}`, ""},     // a pair: one code point
		{`{"name":"x\\ud800"}`, ""},          // an escaped backslash, then text
		{`{"name":"\ufffd and \uFFFD"}`, ""}, // U+FFFD itself
	} {
		_, err := Decode([]byte(tc.in), 8, 2)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Decode(%s) = %v, want %q", tc.in, err, tc.err)
		}
	}
	v, err := Decode([]byte(`{"a": {"b": [1, {"c": 2}]}, "n": 3}`), 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	obj := v.(map[string]any)
	if raw, ok := obj["a"].(json.RawMessage); !ok || string(raw) != `{"b": [1, {"c": 2}]}` {
		t.Fatalf("deep value %T %s", obj["a"], obj["a"])
	}
}

// TestNumberBounds: numbers that would cost more to parse than their
// length are refused by Decode and Check, deep or not; the message quotes
// at most 128 bytes of them.
func TestNumberBounds(t *testing.T) {
	for _, tc := range []struct{ n, err string }{
		{"0." + strings.Repeat("7", MaxNumberLen-2), ""},
		{strings.Repeat("9", 309), ""},
		{"1.5e308", ""},
		{"-2e-400", ""},
		{"1e400", "beyond float64's range"},
		{strings.Repeat("9", 310), "beyond float64's range"},
		{"0." + strings.Repeat("7", MaxNumberLen-1), "characters, more than 400"},
		{strings.Repeat("7", 1<<20), "characters, more than 400"},
		{"1e999999999", "exponent beyond"},
		{"1e-401", "exponent beyond"},
		{"1E+0000000000000000401", "exponent beyond"},
	} {
		for _, doc := range []string{tc.n, `{"a":[{"b":` + tc.n + `}]}`} {
			_, err := Decode([]byte(doc), 8, 1)
			_, _, cerr := Check([]byte(doc), 8, nil)
			for _, e := range []error{err, cerr} {
				if (e == nil) != (tc.err == "") || e != nil && (!strings.Contains(e.Error(), tc.err) || len(e.Error()) > 256) {
					t.Errorf("%.40s…: %v, want %q", doc, e, tc.err)
				}
			}
		}
	}
	// go-cty's binary exponent, for strings a condition converts
	if err := CheckNumber("1p99999999"); err == nil {
		t.Error("1p99999999 accepted")
	}
}

// What Decode accepts, encoding/json reads as the same value.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"a":[1,"x",{"b":null}],"c":true}`, `{"a":1,"A":2}`, `"s\u00e9"`, `[1,2.5e3,-0]`, `{"k":{"\u212a":1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Decode(data, 64, 64)
		if err != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("accepted %q, encoding/json: %v", data, err)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if !bytes.Equal(gj, wj) {
			t.Fatalf("%q: strictjson %s, encoding/json %s", data, gj, wj)
		}
		// fewer levels built: the same value, deeper levels as raw bytes
		for _, build := range []int{0, 1, 2} {
			part, err := Decode(data, 64, build)
			if err != nil {
				t.Fatalf("%q: build %d: %v", data, build, err)
			}
			pj, _ := json.Marshal(part)
			var pv any
			pd := json.NewDecoder(bytes.NewReader(pj))
			pd.UseNumber()
			if err := pd.Decode(&pv); err != nil {
				t.Fatalf("%q: build %d: %s: %v", data, build, pj, err)
			}
			if pj, _ = json.Marshal(pv); !bytes.Equal(pj, wj) {
				t.Fatalf("%q: build %d: %s, encoding/json %s", data, build, pj, wj)
			}
		}
		// Check accepts what Decode accepts
		if obj, _, err := Check(data, 64, nil); err != nil || obj != (data[skipSpace(data)] == '{') {
			t.Fatalf("%q: Check %v %v", data, obj, err)
		}
	})
}

// Fold agrees with bytes.EqualFold, the relation encoding/json matches
// keys by.
func FuzzFold(f *testing.F) {
	for _, s := range [][2]string{{"name", "Name"}, {"params", "param\u017f"}, {"k", "\u212a"}, {"a", "b"}, {"ß", "ẞ"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if (Fold(a) == Fold(b)) != bytes.EqualFold([]byte(a), []byte(b)) {
			t.Fatalf("Fold(%q)=%q Fold(%q)=%q, EqualFold %v", a, Fold(a), b, Fold(b), bytes.EqualFold([]byte(a), []byte(b)))
		}
	})
}

// A megabyte of nested data costs about its size, not a tree of it.
func TestDecodeLargeBodyMemory(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","params":{"arguments":{"a":[` + strings.Repeat("1,", 500000) + `1]}}}`)
	allocs := testing.AllocsPerRun(1, func() {
		if _, err := Decode(body, 64, 2); err != nil {
			t.Fatal(err)
		}
	})
	_ = allocs
	var before, after = memAlloc(), 0.0
	Decode(body, 64, 2)
	after = memAlloc()
	if grew := after - before; grew > 16*float64(len(body)) {
		t.Fatalf("decoding %d bytes allocated %.0f bytes", len(body), grew)
	}
}
