package mcpgw

import (
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
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
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
