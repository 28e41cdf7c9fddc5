package audit

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSON encodes rec as one JSON object with the keys of its struct
// tags, in struct order, without reflection (the writer encodes every
// decision). The output decodes into the same Record with encoding/json.
func (rec *Record) appendJSON(b []byte) []byte {
	b = rec.appendFields(b)
	b = field(b, "prev", rec.Prev, false)
	return append(b, '}')
}

// appendFields is appendJSON without its last member ("prev") and the
// closing brace: the writer appends those from its own state.
func (rec *Record) appendFields(b []byte) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, rec.Seq, 10)
	b = append(b, `,"time":"`...)
	b = rec.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = field(b, "type", rec.Type, false)
	if p := rec.peer; p != nil && p.id == rec.Peer && p.serial == rec.Serial && p.jwtID == rec.JWTID && sameBytes(p.claims, rec.Claims) {
		b = appendClaims(append(b, p.enc...), p.claims)
	} else {
		b = appendPeer(b, rec.Peer, rec.Serial, rec.JWTID, rec.Claims)
	}
	b = appendEntity(b, "subject", rec.Subject)
	b = appendEntity(b, "resource", rec.Resource)
	if a := rec.Action; a != nil {
		b = append(b, `,"action":{"kind":`...)
		b = appendString(b, a.Kind)
		b = field(b, "method", a.Method, true)
		b = field(b, "path", a.Path, true)
		b = field(b, "name", a.Name, true)
		b = append(b, '}')
	}
	b = field(b, "decision", rec.Decision, true)
	if len(rec.Rules) > 0 {
		b = append(b, `,"rules":[`...)
		for i, r := range rec.Rules {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, r)
		}
		b = append(b, ']')
	}
	b = field(b, "reason", rec.Reason, true)
	b = field(b, "policy_digest", rec.PolicyDigest, true)
	b = field(b, "frontend", rec.Frontend, true)
	b = field(b, "caller", rec.Caller, true)
	b = appendAgentSig(b, rec.AgentSig)
	b = field(b, "signer", rec.Signer, true)
	if len(rec.Chain) > 0 {
		b = append(b, `,"x5c":[`...)
		for i, der := range rec.Chain {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendBytes(b, der)
		}
		b = append(b, ']')
	}
	if len(rec.Signature) > 0 {
		b = append(b, `,"sig":`...)
		b = appendBytes(b, rec.Signature)
	}
	b = field(b, "note_key", rec.NoteKey, true)
	b = field(b, "note", rec.Note, true)
	b = field(b, "origin", rec.Origin, true)
	if len(rec.Tree) > 0 {
		b = append(b, `,"tree":[`...)
		for i, h := range rec.Tree {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendBytes(b, h)
		}
		b = append(b, ']')
	}
	return b
}

// appendPeer encodes a record's peer, serial, jwt_id and claims members.
func appendPeer(b []byte, peer, serial, jwtID string, claims []byte) []byte {
	b = field(b, "peer", peer, true)
	b = field(b, "serial", serial, true)
	b = field(b, "jwt_id", jwtID, true)
	return appendClaims(b, claims)
}

func appendClaims(b, claims []byte) []byte {
	if len(claims) > 0 {
		b = append(b, `,"claims":`...)
		b = append(b, claims...)
	}
	return b
}

// sameBytes says whether a and b are the same slice (not only equal
// bytes: a caller may have changed the array).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func field(b []byte, key, val string, omitEmpty bool) []byte {
	if omitEmpty && val == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, val)
}

func appendBytes(b, v []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string; invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is safe and not yet copied: copied in runs
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			} else {
				b = append(b, '\\', c)
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendEntity(b []byte, key string, e *Entity) []byte {
	if e == nil {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, `":{"type":`...)
	b = appendString(b, e.Type)
	b = append(b, `,"id":`...)
	b = appendString(b, e.ID)
	return append(b, '}')
}

func appendAgentSig(b []byte, s *AgentSignature) []byte {
	if s == nil {
		return b
	}
	b = append(b, `,"agent_sig":{`...)
	n := len(b)
	b = field(b, "label", s.Label, true)
	b = field(b, "base", s.Base, true)
	if len(s.Sig) > 0 {
		b = append(b, `,"sig":`...)
		b = appendBytes(b, s.Sig)
	}
	b = field(b, "input", s.Input, true)
	b = field(b, "value", s.Value, true)
	if len(s.Body) > 0 {
		b = append(b, `,"body":`...)
		b = appendBytes(b, s.Body)
	}
	if len(b) > n {
		b = append(b[:n], b[n+1:]...) // the first member's comma
	}
	return append(b, '}')
}
