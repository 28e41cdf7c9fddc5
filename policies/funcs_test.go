package policies

import (
	"strconv"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// TestDistinctLinear: distinct of 8,192 distinct strings takes tens of
// milliseconds; go-cty's, comparing every pair (33 million comparisons),
// took 63 s.
func TestDistinctLinear(t *testing.T) {
	vals := make([]cty.Value, 8192)
	for i := range vals {
		vals[i] = cty.StringVal(strconv.Itoa(i))
	}
	start := time.Now()
	got, err := distinctFunc.Call([]cty.Value{cty.ListVal(append(vals, vals[:10]...))})
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("distinct took %v", el)
	}
	if err != nil || got.LengthInt() != len(vals) {
		t.Fatalf("distinct = %d elements, %v", got.LengthInt(), err)
	}
	if got.Index(cty.NumberIntVal(8191)).AsString() != "8191" {
		t.Error("order not kept")
	}
}
