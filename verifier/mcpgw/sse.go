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

// next returns the next event; io.EOF at the end of a stream that ended
// between events, another error (io.ErrUnexpectedEOF for one that ended
// inside an event) otherwise.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := s.line()
		if err != nil {
			if errors.Is(err, io.EOF) && len(ev.raw) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return sseEvent{}, err
		}
		ev.raw = append(ev.raw, line...)
		if len(ev.raw) > s.max {
			return sseEvent{}, errEventTooLarge
		}
		text := bytes.TrimRight(line, "\r\n")
		if len(text) == 0 {
			if len(ev.raw) == len(line) { // blank lines between events
				ev.raw = ev.raw[:0]
				continue
			}
			return ev, nil
		}
		field, value, _ := bytes.Cut(text, []byte(":"))
		if string(field) == "data" {
			value = bytes.TrimPrefix(value, []byte(" "))
			if ev.hasData {
				ev.data = append(ev.data, '\n')
			}
			ev.data = append(ev.data, value...)
			ev.hasData = true
		}
	}
}

func (s *sseReader) line() ([]byte, error) {
	var out []byte
	for {
		chunk, err := s.r.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > s.max {
			return nil, errEventTooLarge
		}
		switch {
		case err == nil:
			return out, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(out) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// withData is the event with its data replaced (its other fields kept).
func (ev sseEvent) withData(data []byte) []byte {
	var out []byte
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
	for d := range bytes.SplitSeq(data, []byte("\n")) { // each line, empty ones included
		out = append(out, "data: "...)
		out = append(out, d...)
		out = append(out, '\n')
	}
	return append(out, '\n')
}
