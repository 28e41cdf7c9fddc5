package attestor

import (
	"fmt"
	"slices"
	"sort"

	"github.com/agentid/agentid/internal/strictjson"
)

// maxJSONDepth bounds the nesting of a manifest or task record: the
// envelope, the claims, their string arrays.
const maxJSONDepth = 8

// checkObjectKeys refuses data unless it is one JSON object whose keys
// are all among keys, spelled exactly so (encoding/json would take "PID"
// for "pid"), with no key twice or in two spellings anywhere in the
// document ([strictjson]): a reader that keeps the first "incarnation"
// and one that keeps the last must not see two different manifests. what
// names the document in the error.
func checkObjectKeys(what string, data []byte, keys ...string) error {
	v, err := strictjson.Decode(data, maxJSONDepth, 1)
	if err != nil {
		return fmt.Errorf("attestor: %s: %w", what, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("attestor: %s: not a JSON object", what)
	}
	got := make([]string, 0, len(obj))
	for k := range obj {
		got = append(got, k)
	}
	sort.Strings(got)
	for _, k := range got {
		if slices.Contains(keys, k) {
			continue
		}
		for _, want := range keys {
			if strictjson.Fold(k) == strictjson.Fold(want) {
				return fmt.Errorf("attestor: %s: key %s must be spelled %q", what, strictjson.Quote(k), want)
			}
		}
		return fmt.Errorf("attestor: %s: unknown key %s", what, strictjson.Quote(k))
	}
	return nil
}
