// Package strictjson decodes JSON the way a case-sensitive reader must
// agree with every other one: a duplicate key, or keys that differ only in
// case, anywhere in the document are refused (encoding/json matches keys
// case-insensitively and keeps the last duplicate, so {"name":"a","Name":"b"}
// means different things to different readers), as is data after the
// value and nesting deeper than a bound.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Decode reads exactly one JSON value: objects as map[string]any with
// their keys as written, arrays as []any, numbers as json.Number.
func Decode(data []byte, maxDepth int) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := read(dec, 0, maxDepth)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

func read(dec *json.Decoder, depth, maxDepth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		obj := map[string]any{}
		seen := map[string]string{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string)
			lk := strings.ToLower(k)
			if prev, dup := seen[lk]; dup {
				if prev == k {
					return nil, fmt.Errorf("duplicate key %s", Quote(k))
				}
				return nil, fmt.Errorf("keys %s and %s differ only in case", Quote(prev), Quote(k))
			}
			seen[lk] = k
			if obj[k], err = read(dec, depth+1, maxDepth); err != nil {
				return nil, err
			}
		}
		_, err := dec.Token()
		return obj, err
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := read(dec, depth+1, maxDepth)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := dec.Token()
		return arr, err
	}
	return nil, fmt.Errorf("unexpected %q", d)
}

// Quote renders s as a JSON string for a message, cut at 128 bytes.
func Quote(s string) string {
	if len(s) > 128 {
		s = s[:128] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
