package mcpgw

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func readEvents(t *testing.T, in []byte) ([]sseEvent, error) {
	t.Helper()
	rd := newSSEReader(bytes.NewReader(in), 1<<16)
	defer rd.release()
	var evs []sseEvent
	for {
		ev, err := rd.next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

func TestSSEReader(t *testing.T) {
	in := ": comment\n\nid: 7\nevent: message\ndata: {\"a\":\ndata: 1}\nretry: 10\n\n\r\ndata: x\r\n\r\n"
	evs, err := readEvents(t, []byte(in))
	if !errors.Is(err, io.EOF) || len(evs) != 3 {
		t.Fatalf("%d events, %v", len(evs), err)
	}
	if evs[0].hasData || string(evs[0].raw) != ": comment\n\n" {
		t.Fatalf("comment event %+v", evs[0])
	}
	if string(evs[1].data) != "{\"a\":\n1}" || !evs[1].hasData {
		t.Fatalf("data %q", evs[1].data)
	}
	if got := string(evs[1].withData([]byte(`{"b":2}`))); got != "id: 7\nevent: message\nretry: 10\ndata: {\"b\":2}\n\n" {
		t.Fatalf("withData %q", got)
	}
	if string(evs[2].data) != "x" {
		t.Fatalf("CRLF event %q", evs[2].data)
	}
	// a stream that ends inside an event is broken, not finished
	if _, err := readEvents(t, []byte("data: {\"id\":1")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut stream: %v", err)
	}
	if _, err := readEvents(t, []byte("data: "+strings.Repeat("x", 1<<17)+"\n\n")); !errors.Is(err, errEventTooLarge) {
		t.Fatalf("oversized event: %v", err)
	}
}

// FuzzSSEReader: the events pass the stream through unchanged (their raw
// bytes, less the blank lines between events, are the input), and an
// event rebuilt with its own data reads back as the same data.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{"event: message\ndata: {}\n\n", ": c\n\ndata: a\ndata: b\n\n", "data:x\r\n\r\n", "id: 1\n\ndata: \n\n", "\n\n\ndata: y"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		evs, _ := readEvents(t, in)
		var all []byte
		for _, ev := range evs {
			all = append(all, ev.raw...)
			if !ev.hasData {
				continue
			}
			again, err := readEvents(t, ev.withData(ev.data))
			if len(again) != 1 || !bytes.Equal(again[0].data, ev.data) {
				t.Fatalf("event %q rebuilt as %q reads %d events (%v)", ev.raw, ev.withData(ev.data), len(again), err)
			}
		}
		if !bytes.Contains(stripBlankLines(in), stripBlankLines(all)) {
			t.Fatalf("events %q are not the input %q", all, in)
		}
	})
}

func stripBlankLines(b []byte) []byte {
	var out []byte
	for line := range bytes.Lines(b) {
		if len(bytes.TrimRight(line, "\r\n")) > 0 {
			out = append(out, line...)
		}
	}
	return out
}

// FuzzTopLevelString: on any JSON object, topLevelString reads a key as
// a map[string]json.RawMessage decoding does (exact key, the last
// duplicate), without building the object.
func FuzzTopLevelString(f *testing.F) {
	for _, s := range []string{`{"name":"a"}`, `{"Name":"b","name":"a"}`, `{"name":"a","name":"c"}`, `{"x":{"name":"no"},"name":"y"}`,
		`{"n\u0061me":"esc"}`, `{"name":1}`, `{"a":["}",{"name":"q"}],"name":"\"z\""}`, ` { "name" : "s" } `, `{}`, `{"uri":"file:///x"}`} {
		f.Add([]byte(s), "name")
	}
	f.Fuzz(func(t *testing.T, obj []byte, key string) {
		var m map[string]json.RawMessage
		if json.Unmarshal(obj, &m) != nil {
			return
		}
		var want string
		wantOK := json.Unmarshal(m[key], &want) == nil && len(m[key]) > 0 && m[key][0] == '"'
		got, ok := topLevelString(obj, key)
		if ok != wantOK || got != want {
			t.Fatalf("%q in %s: got %q %v, want %q %v", key, obj, got, ok, want, wantOK)
		}
	})
}

// FuzzReplaceTopLevel: replacing the id of a JSON object keeps it one
// valid object with the same keys, the id now the new one (every
// top-level "id", however spelled), and messageKind reads it back.
func FuzzReplaceTopLevel(f *testing.F) {
	for _, s := range []string{`{"id":1,"result":{}}`, `{"id":1.0,"id":"x"}`, `{"i\u0064":"<a>","method":"m"}`,
		`{"x":{"id":2},"result":[1,"}"]}`, ` { "id" : 10E-1 } `, `{}`, `{"ID":3,"id":4}`, `{"result":{},"id":null}`, `{"id":1,"method":"m","result":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		var before map[string]json.RawMessage
		if json.Unmarshal(obj, &before) != nil {
			return
		}
		out, old, ok := replaceTopLevel(obj, "id", []byte(`"agentid-gateway-1"`))
		if !ok {
			t.Fatalf("%s: not replaced", obj)
		}
		var after map[string]json.RawMessage
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatalf("%s -> %s: %v", obj, out, err)
		}
		if len(after) != len(before) {
			t.Fatalf("%s -> %s: keys changed", obj, out)
		}
		if _, hadID := before["id"]; hadID != (old != nil) || !bytes.Equal(old, before["id"]) {
			t.Fatalf("%s: old id %s, want %s", obj, old, before["id"])
		}
		if old == nil {
			return
		}
		request, id, isString, ok := messageKind(out)
		_, m := before["method"]
		_, r := before["result"]
		_, e := before["error"]
		if !ok || !isString || id != "agentid-gateway-1" || request != (m && !r && !e) {
			t.Fatalf("%s -> %s: messageKind %v %q %v %v", obj, out, request, id, isString, ok)
		}
	})
}

// TestSSEReaderRefusesLoneCR: the SSE standard ends a line at CR, LF or
// CRLF, and eventsource-parser (the TypeScript SDK's client) does so. A
// reader splitting on LF only would take "data: A\r\rdata: B\n\n" for
// one event whose data is A (the gateway deciding A) while the client
// reads two events, the second B unchecked. A CR anywhere but right
// before the LF is refused: the stream is broken, not passed on.
func TestSSEReaderRefusesLoneCR(t *testing.T) {
	for _, in := range []string{
		"data: {\"method\":\"a\"}\r\rdata: {\"method\":\"b\"}\n\n",
		"data: x\rdata: y\n\n",
		"event: message\r\n\r\r\ndata: y\n\n",
		"data: x\r\r\n\n",
	} {
		evs, err := readEvents(t, []byte(in))
		if !errors.Is(err, errLoneCR) {
			t.Errorf("%q: %d events, err %v; want errLoneCR", in, len(evs), err)
		}
	}
}
