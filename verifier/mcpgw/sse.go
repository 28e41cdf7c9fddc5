package mcpgw

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

// sseReader reads Server-Sent Events one event at a time, keeping each
// event's bytes as they came so that events the gateway does not change
// pass through unchanged (ids, retry, comments).
type sseReader struct {
	r   *bufio.Reader
	max int
}

type sseEvent struct {
	raw     []byte // the event's lines, with the blank line that ends it
	data    []byte // its data lines joined with "\n"
	hasData bool
}

var sseBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

func newSSEReader(r io.Reader, max int) *sseReader {
	br := sseBufs.Get().(*bufio.Reader)
	br.Reset(r)
	return &sseReader{r: br, max: max}
}

// release returns the reader's buffer; s is not used after.
func (s *sseReader) release() {
	s.r.Reset(nil)
	sseBufs.Put(s.r)
	s.r = nil
}

var errEventTooLarge = errors.New("an SSE event exceeds the gateway's limit")

// errLoneCR: a CR inside an SSE line. Clients end lines at a lone CR (the
// SSE standard), the gateway at LF: rather than read the stream otherwise
// than the client would, the gateway refuses it.
var errLoneCR = errors.New("an SSE line holds a CR that is not part of its line end")

// next returns the next event; io.EOF at the end of a stream that ended
// between events, another error (io.ErrUnexpectedEOF for one that ended
// inside an event) otherwise. The lines are read straight into ev.raw;
// the data of a one-line event is a slice of it.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	ds, de := 0, 0 // the first data line's value in ev.raw
	multi := false // more than one data line: ev.data is built
	for {
		start := len(ev.raw)
		raw, err := s.appendLine(ev.raw)
		if err != nil {
			if errors.Is(err, io.EOF) && start > 0 {
				err = io.ErrUnexpectedEOF
			}
			return sseEvent{}, err
		}
		ev.raw = raw
		text := raw[start : len(raw)-1] // without its LF
		text = bytes.TrimSuffix(text, []byte("\r"))
		if bytes.IndexByte(text, '\r') >= 0 {
			return sseEvent{}, errLoneCR
		}
		if len(text) == 0 {
			if start == 0 { // blank lines between events
				ev.raw = ev.raw[:0]
				continue
			}
			if ev.hasData && !multi {
				ev.data = ev.raw[ds:de:de]
			}
			return ev, nil
		}
		field, value, _ := bytes.Cut(text, []byte(":"))
		if string(field) == "data" {
			value = bytes.TrimPrefix(value, []byte(" "))
			vs, ve := start+len(text)-len(value), start+len(text)
			switch {
			case !ev.hasData:
				ds, de = vs, ve
			case !multi:
				multi = true
				ev.data = append(append(append([]byte(nil), ev.raw[ds:de]...), '\n'), ev.raw[vs:ve]...)
			default:
				ev.data = append(append(ev.data, '\n'), ev.raw[vs:ve]...)
			}
			ev.hasData = true
		}
	}
}

// appendLine appends the next line (with its end) to dst.
func (s *sseReader) appendLine(dst []byte) ([]byte, error) {
	start := len(dst)
	for {
		chunk, err := s.r.ReadSlice('\n')
		dst = append(dst, chunk...)
		if len(dst) > s.max {
			return nil, errEventTooLarge
		}
		switch {
		case err == nil:
			return dst, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(dst) > start:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// withData is the event with its data replaced (its other fields kept).
func (ev sseEvent) withData(data []byte) []byte {
	out := ev.fields(len(data))
	return append(appendDataLines(append(out, "data: "...), data), '\n', '\n')
}

// withTopLevel is the event with its data, a JSON object, carrying val as
// the value of every top-level key spelled key (as
// ev.withData(replaceTopLevel(ev.data, key, val)) has it, in one pass:
// the answer to a call is copied once on its way through).
func (ev sseEvent) withTopLevel(key string, val []byte) ([]byte, bool) {
	type span struct{ s, e int }
	var first [2]span
	spans := first[:0]
	if !eachTopLevel(ev.data, func(k []byte, s, e int) {
		if keyIs(k, key) {
			spans = append(spans, span{s, e})
		}
	}) {
		return nil, false
	}
	out := ev.fields(len(ev.data) + len(spans)*len(val))
	out = append(out, "data: "...)
	prev := 0
	for _, sp := range spans {
		out = appendDataLines(out, ev.data[prev:sp.s])
		out = appendDataLines(out, val)
		prev = sp.e
	}
	return append(appendDataLines(out, ev.data[prev:]), '\n', '\n'), true
}

// fields is a new buffer holding the event's lines but its data lines,
// with room for extra bytes of data.
func (ev sseEvent) fields(extra int) []byte {
	out := make([]byte, 0, len(ev.raw)+extra+16)
	for line := range bytes.Lines(ev.raw) {
		text := bytes.TrimRight(line, "\r\n")
		if len(text) == 0 {
			continue
		}
		if field, _, _ := bytes.Cut(text, []byte(":")); string(field) == "data" {
			continue
		}
		out = append(out, text...)
		out = append(out, '\n')
	}
	return out
}

// appendDataLines appends d to a data line, each newline in it starting
// the next data line.
func appendDataLines(out, d []byte) []byte {
	for {
		i := bytes.IndexByte(d, '\n')
		if i < 0 {
			return append(out, d...)
		}
		out = append(append(out, d[:i]...), "\ndata: "...)
		d = d[i+1:]
	}
}
