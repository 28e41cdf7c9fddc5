package strictjson

import (
	"strings"
	"testing"
)

// Review 17: surrogate escapes in every spelling, and the invalid-UTF-8
// check next to them.
func TestSurrogatesAndInvalidUTF8(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{`{"name":"\uD83D\uDE00"}`, ""},
		{`{"name":"\uD83d\uDe00"}`, ""},
		{`{"\ud83d\ude00":1}`, ""},
		{`{"\ud83d":1}`, "lone surrogate"},
		{`{"\ude00x":1}`, "lone surrogate"},
		{`{"name":"\ud83d\n\ude00"}`, "lone surrogate"},     // a pair split by another escape
		{`{"name":"\ud83d\\\ude00"}`, "lone surrogate"},     // split by an escaped backslash
		{`{"name":"\ud83d\u00e9"}`, "lone surrogate"},       // high, then an escaped non-surrogate
		{`{"name":"\ud83d\ud83d\ude00"}`, "lone surrogate"}, // two highs
		{`{"name":"\ud83d\ude00\ude00"}`, "lone surrogate"}, // two lows
		{`{"name":"\ud83dé"}`, "lone surrogate"},
		// invalid UTF-8 is refused (the package says why) — also next to
		// an escaped U+FFFD?
		{"{\"name\":\"\\ufffd\xff\"}", "invalid UTF-8"},
		{"{\"na\\u006de\xff\":1}", "invalid UTF-8"},
	} {
		_, err := Decode([]byte(tc.in), 8, 2)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Decode(%q) = %v, want %q", tc.in, err, tc.err)
		}
	}
}

// BenchmarkEscapedStrings: the cost per byte of a string of escapes must
// not grow with its length (compare the ns/op ratios: 1 KiB vs 1 MiB).
func BenchmarkEscapedStrings(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20} {
		for _, unit := range []string{`\ud83d\ude00`, `\u0041`, `\\`} {
			s := `{"a":"` + strings.Repeat(unit, n/len(unit)) + `"}`
			b.Run(unit+"/"+map[bool]string{true: "1KiB", false: "1MiB"}[n == 1<<10], func(b *testing.B) {
				b.SetBytes(int64(len(s)))
				for b.Loop() {
					if _, err := Decode([]byte(s), 8, 2); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
