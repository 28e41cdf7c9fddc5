package mcpgw

import (
	"bytes"
	"encoding/json"
)

// topLevelString returns the string value of key in the JSON object obj
// (which encoding/json has already validated), matching the key exactly,
// as a case-sensitive reader does; with a duplicate key the last one
// counts (as JavaScript's JSON.parse and Go maps have it). ok is false
// when the key is absent or its value is not a string. It walks the
// object once without building it.
func topLevelString(obj []byte, key string) (val string, ok bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return "", false
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] == '}' {
			return val, ok
		}
		if obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
		kEnd := stringEnd(obj, i)
		if kEnd < 0 {
			return "", false
		}
		k := obj[i:kEnd]
		i = skipSpace(obj, kEnd)
		if i >= len(obj) || obj[i] != ':' {
			return "", false
		}
		i = skipSpace(obj, i+1)
		vEnd := valueEnd(obj, i)
		if vEnd < 0 {
			return "", false
		}
		if keyIs(k, key) {
			var s string
			if obj[i] == '"' && json.Unmarshal(obj[i:vEnd], &s) == nil {
				val, ok = s, true
			} else {
				val, ok = "", false
			}
		}
		i = vEnd
	}
}

// keyIs reports whether the quoted JSON string k is key (decoding
// escapes only when there are any).
func keyIs(k []byte, key string) bool {
	raw := k[1 : len(k)-1]
	for _, c := range raw {
		if c == '\\' {
			var s string
			return json.Unmarshal(k, &s) == nil && s == key
		}
	}
	return string(raw) == key
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd is the index after the JSON string starting at b[i], -1 if
// there is none.
func stringEnd(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; ; {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		q := i + j
		n := 0 // the backslashes right before the quote: an odd run escapes it
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
}

// valueEnd is the index after the JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				e := stringEnd(b, i)
				if e < 0 {
					return -1
				}
				i = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	for ; i < len(b); i++ { // a number, true, false, null
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return i
}

// eachTopLevel calls f with each key (quoted, as sent) and value span of
// the JSON object obj, in order; false when obj is not an object as far
// as the walk can tell (it does not validate the values).
func eachTopLevel(obj []byte, f func(k []byte, vStart, vEnd int)) bool {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) {
			return false
		}
		if obj[i] == '}' {
			return true
		}
		if obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
		kEnd := stringEnd(obj, i)
		if kEnd < 0 {
			return false
		}
		k := obj[i:kEnd]
		i = skipSpace(obj, kEnd)
		if i >= len(obj) || obj[i] != ':' {
			return false
		}
		i = skipSpace(obj, i+1)
		vEnd := valueEnd(obj, i)
		if vEnd < 0 || vEnd == i {
			return false
		}
		f(k, i, vEnd)
		i = vEnd
	}
}

// replaceTopLevel is obj with the value of every top-level key spelled
// key replaced by val, and the last value it had (nil when absent; a
// slice of obj).
func replaceTopLevel(obj []byte, key string, val []byte) (out, old []byte, ok bool) {
	type span struct{ s, e int }
	var first [2]span // one id, or a duplicate: no allocation
	spans := first[:0]
	if !eachTopLevel(obj, func(k []byte, s, e int) {
		if keyIs(k, key) {
			spans = append(spans, span{s, e})
		}
	}) {
		return nil, nil, false
	}
	if len(spans) == 0 {
		return obj, nil, true
	}
	n := len(obj)
	for _, sp := range spans {
		n += len(val) - (sp.e - sp.s)
	}
	out = make([]byte, 0, n)
	prev := 0
	for _, sp := range spans {
		out = append(out, obj[prev:sp.s]...)
		out = append(out, val...)
		prev = sp.e
	}
	out = append(out, obj[prev:]...)
	last := spans[len(spans)-1]
	return out, obj[last.s:last.e:last.e], true
}

// messageKind reads a JSON-RPC message's envelope by its exact keys, as
// a case-sensitive client does: whether it is a request or notification
// (a "method", and neither "result" nor "error": a message with both is
// taken for a response), and its id when that is a string (the last one,
// as with topLevelString). ok is false for what is not a JSON object;
// the values are not validated (a client cannot read an invalid message
// at all).
func messageKind(msg []byte) (request bool, id string, idIsString, ok bool) {
	request, rawID, idIsString, ok := messageKindBytes(msg)
	return request, string(rawID), idIsString, ok
}

// messageKindBytes is messageKind with the id's content as bytes (a slice
// of msg when the string has no escape).
func messageKindBytes(msg []byte) (request bool, id []byte, idIsString, ok bool) {
	hasMethod, hasResult := false, false
	ok = eachTopLevel(msg, func(k []byte, s, e int) {
		switch {
		case keyIs(k, "method"):
			hasMethod = true
		case keyIs(k, "result"), keyIs(k, "error"):
			hasResult = true
		case keyIs(k, "id"):
			id, idIsString = jsonString(msg[s:e])
		}
	})
	return hasMethod && !hasResult, id, idIsString, ok
}

// jsonString decodes the JSON string raw (false when raw is not one),
// without allocating when it is printable ASCII without escapes.
func jsonString(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	plain := true
	for _, c := range raw[1 : len(raw)-1] {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		return raw[1 : len(raw)-1 : len(raw)-1], true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil, false
	}
	return []byte(s), true
}
