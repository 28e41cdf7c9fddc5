package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/zclconf/go-cty/cty"

	"github.com/agentid/agentid/internal/strictjson"
)

// MaxArgumentsDepth bounds the nesting of Action.Arguments.
const MaxArgumentsDepth = 64

// ArgumentsValue decodes an MCP tool call's arguments (Action.Arguments)
// as conditions see them: "" is an empty object; otherwise exactly one
// JSON object, read strictly — a duplicate key, keys that encoding/json
// would fold together ("path" and "Path"), trailing data or nesting over
// MaxArgumentsDepth are errors, since a tool could read another value than
// the policy did. Objects become HCL objects, arrays tuples, numbers
// numbers and null a null value.
func ArgumentsValue(args string) (cty.Value, error) {
	if args == "" {
		return cty.EmptyObjectVal, nil
	}
	if len(args) > MaxArgumentsLen {
		return cty.NilVal, &LimitError{Field: "action.arguments", Len: len(args), Max: MaxArgumentsLen}
	}
	v, err := strictjson.Decode([]byte(args), MaxArgumentsDepth, MaxArgumentsDepth+1)
	if err != nil {
		return cty.NilVal, err
	}
	if _, ok := v.(map[string]any); !ok {
		return cty.NilVal, errors.New("not a JSON object")
	}
	return jsonValue(v)
}

// CheckArguments reports why args cannot be decided on (see
// ArgumentsValue), or nil: the same checks without building the value
// (a decision builds it only when a condition reads the arguments).
func CheckArguments(args string) error {
	if args == "" {
		return nil
	}
	if len(args) > MaxArgumentsLen {
		return &LimitError{Field: "action.arguments", Len: len(args), Max: MaxArgumentsLen}
	}
	obj, numErr, err := strictjson.Check([]byte(args), MaxArgumentsDepth, checkNumber)
	switch {
	case err != nil:
		return err
	case !obj:
		return errors.New("not a JSON object")
	}
	return numErr
}

// checkNumber refuses the numbers jsonValue refuses beyond those the
// scanner refuses (strictjson.CheckNumber: longer than MaxNumberLen
// characters, an exponent beyond ±400, or beyond float64's range): an
// integer that float64 cannot hold exactly. The policy reads it exactly,
// but JavaScript servers (and Go servers decoding into any) round it, so a
// condition and the tool would see two different numbers.
func checkNumber(n []byte) error {
	if bytes.IndexAny(n, "eE") < 0 {
		return checkIntegerExact(n)
	}
	return nil
}

// checkIntegerExact refuses an integer literal beyond 2^53 that float64
// rounds (a fraction is left alone: decimals are inexact in float64
// anyway, and servers and policies agree on their digits).
func checkIntegerExact(n []byte) error {
	digits := bytes.TrimPrefix(n, []byte("-"))
	if len(digits) <= 15 || bytes.IndexByte(n, '.') >= 0 { // < 2^53: exact
		return nil
	}
	if err := strictjson.CheckNumber(string(n)); err != nil { // before parsing: quadratic in the digits
		return err
	}
	i, ok := new(big.Int).SetString(string(n), 10)
	if !ok {
		return nil // not an integer literal: the JSON scanner judged it
	}
	if _, acc := new(big.Float).SetInt(i).Float64(); acc != big.Exact {
		return fmt.Errorf("the integer %s is not exact in float64: JavaScript and Go servers that decode into float64 round it, so the policy and the tool would see different numbers; send it as a string", strictjson.Quote(string(n)))
	}
	return nil
}

func jsonValue(v any) (cty.Value, error) {
	switch x := v.(type) {
	case nil:
		return cty.NullVal(cty.DynamicPseudoType), nil
	case bool:
		return cty.BoolVal(x), nil
	case string:
		return cty.StringVal(x), nil
	case json.Number:
		if err := strictjson.CheckNumber(string(x)); err != nil { // before parsing
			return cty.NilVal, err
		}
		if bytes.IndexAny([]byte(x), "eE") < 0 {
			if err := checkIntegerExact([]byte(x)); err != nil {
				return cty.NilVal, err
			}
		}
		return cty.ParseNumberVal(string(x))
	case map[string]any:
		if len(x) == 0 {
			return cty.EmptyObjectVal, nil
		}
		m := make(map[string]cty.Value, len(x))
		for k, e := range x {
			ev, err := jsonValue(e)
			if err != nil {
				return cty.NilVal, err
			}
			m[k] = ev
		}
		return cty.ObjectVal(m), nil
	case []any:
		if len(x) == 0 {
			return cty.EmptyTupleVal, nil
		}
		l := make([]cty.Value, len(x))
		for i, e := range x {
			ev, err := jsonValue(e)
			if err != nil {
				return cty.NilVal, err
			}
			l[i] = ev
		}
		return cty.TupleVal(l), nil
	}
	return cty.NilVal, errors.New("unexpected JSON value")
}
