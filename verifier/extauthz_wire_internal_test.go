package verifier

import (
	"bytes"
	"reflect"
	"testing"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// envoyLike is a CheckRequest as Envoy sends it, with the fields the
// verifier does not read filled in too.
func envoyLike() *authv3.CheckRequest {
	md, _ := structpb.NewStruct(map[string]any{"route": "kb", "n": 3.0})
	sock := func(a string, p uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: a, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:     sock("10.0.0.7", 51234),
			Principal:   "spiffe://example.org/agent/task/T-1",
			Certificate: "-----BEGIN%20CERTIFICATE-----%0AMIIB...%0A-----END%20CERTIFICATE-----%0A",
			Labels:      map[string]string{"a": "b"},
		},
		Destination: &authv3.AttributeContext_Peer{Address: sock("10.0.0.8", 443), Principal: "spiffe://example.org/kb"},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "req-1", Method: "POST", Path: "/kb/doc?q=1", Host: "kb.internal", Scheme: "https",
				Query: "q=1", Fragment: "", Size: 17, Protocol: "HTTP/2",
				Headers: map[string]string{":authority": "kb.internal", "content-type": "application/json", "signature": "sig=:AAAA:", "x-agentid-task": "forged"},
				Body:    `{"a":"é"}`,
			},
		},
		ContextExtensions: map[string]string{"virtual_host": "kb"},
		MetadataContext:   &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": md}},
		TlsSession:        &authv3.AttributeContext_TLSSession{Sni: "kb.internal"},
	}}
}

// TestExtAuthzWireDecodesAlike: the wire decoder reads what protobuf's
// decoder followed by Check reads, for Envoy-like requests and variants.
func TestExtAuthzWireDecodesAlike(t *testing.T) {
	variants := map[string]func(*authv3.CheckRequest){
		"envoy":      func(*authv3.CheckRequest) {},
		"raw body":   func(r *authv3.CheckRequest) { r.Attributes.Request.Http.RawBody = []byte{0, 0xff, 1} },
		"empty":      func(r *authv3.CheckRequest) { r.Attributes = nil },
		"no http":    func(r *authv3.CheckRequest) { r.Attributes.Request.Http = nil },
		"no address": func(r *authv3.CheckRequest) { r.Attributes.Source.Address = nil },
		"pipe": func(r *authv3.CheckRequest) {
			r.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/x"}}}
		},
		"header map": func(r *authv3.CheckRequest) {
			h := r.Attributes.Request.Http
			h.Headers = nil
			h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "authorization", RawValue: []byte("Bearer x")}, {Key: "X-Two", RawValue: []byte("1")},
				{Key: "x-two", Value: "2"}, {Key: "bin", RawValue: []byte{0xff, 0xfe}},
			}}
		},
		"both header forms": func(r *authv3.CheckRequest) {
			r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "a", RawValue: []byte("b")}}}
		},
		"empty header map": func(r *authv3.CheckRequest) { r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{} },
		"big size":         func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Size = -1 },
	}
	for name, change := range variants {
		t.Run(name, func(t *testing.T) {
			req := envoyLike()
			change(req)
			b, err := proto.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			compareDecoders(t, b, true)
		})
	}
}

// compareDecoders decodes b both ways; when both succeed they must agree.
// mustDecode: the wire decoder must succeed.
func compareDecoders(t *testing.T, b []byte, mustDecode bool) {
	t.Helper()
	var want, got checkInput
	var req authv3.CheckRequest
	perr := proto.Unmarshal(b, &req)
	if perr == nil {
		inputFromProto(&req, &want)
	}
	werr := decodeCheckRequest(append([]byte(nil), b...), &got)
	if werr != nil {
		if mustDecode {
			t.Fatalf("wire decoder: %v", werr)
		}
		return
	}
	if perr != nil {
		// Invalid UTF-8 or wire format in a field the verifier does not
		// read, which it skips without decoding.
		return
	}
	if len(want.body) == 0 {
		want.body = nil
	}
	if len(got.body) == 0 {
		got.body = nil
	}
	if len(want.headers) == 0 {
		want.headers = nil
	}
	if len(got.headers) == 0 {
		got.headers = nil
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("decoders differ:\nprotobuf %+v\nwire     %+v", want, got)
	}
}

// TestExtAuthzWireRefuses: encodings protobuf would merge or read
// leniently, which Envoy never sends, are refused instead of guessed.
func TestExtAuthzWireRefuses(t *testing.T) {
	b, _ := proto.Marshal(envoyLike())
	msg := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	http := func(fields ...[]byte) []byte {
		var h []byte
		for _, f := range fields {
			h = append(h, f...)
		}
		return msg(fCheckAttributes, msg(fAttrRequest, msg(fRequestHTTP, h)))
	}
	for name, in := range map[string][]byte{
		"attributes twice":  append(append([]byte(nil), b...), b...),
		"method twice":      http(msg(fHTTPMethod, []byte("GET")), msg(fHTTPMethod, []byte("DELETE"))),
		"path as varint":    http(protowire.AppendVarint(protowire.AppendTag(nil, fHTTPPath, protowire.VarintType), 1)),
		"method not UTF-8":  http(msg(fHTTPMethod, []byte{0xff})),
		"truncated":         b[:len(b)-3],
		"bad tag":           {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"header key twice":  http(msg(fHTTPHeaders, append(msg(fHeaderKey, []byte("a")), msg(fHeaderKey, []byte("b"))...))),
		"header not UTF-8":  http(msg(fHTTPHeaders, append(msg(fHeaderKey, []byte("a")), msg(fHeaderValue, []byte{0xc0})...))),
		"size as bytes":     http(msg(fHTTPSize, []byte("1"))),
		"certificate twice": msg(fCheckAttributes, msg(fAttrSource, append(msg(fPeerCertificate, []byte("a")), msg(fPeerCertificate, []byte("b"))...))),
	} {
		var got checkInput
		if err := decodeCheckRequest(in, &got); err == nil {
			t.Errorf("%s: decoded as %+v", name, got)
		}
	}
}

func FuzzExtAuthzWire(f *testing.F) {
	b, _ := proto.Marshal(envoyLike())
	f.Add(b)
	r := envoyLike()
	r.Attributes.Request.Http.Headers = nil
	r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "a", RawValue: []byte("b")}, {Key: "a", Value: "c"}}}
	b, _ = proto.Marshal(r)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		compareDecoders(t, b, false)
	})
}

func wireMsg(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

// wireRequest is a CheckRequest whose HttpRequest holds the given
// encoded fields, besides method GET and path /kb/doc-1.
func wireRequest(src []byte, httpFields ...[]byte) []byte {
	h := append(wireMsg(fHTTPMethod, []byte("GET")), wireMsg(fHTTPPath, []byte("/kb/doc-1"))...)
	for _, f := range httpFields {
		h = append(h, f...)
	}
	attrs := wireMsg(fAttrRequest, wireMsg(fRequestHTTP, h))
	if src != nil {
		attrs = append(wireMsg(fAttrSource, src), attrs...)
	}
	return wireMsg(fCheckAttributes, attrs)
}

// TestHeaderMapLinesJoinedOnce: many header_map lines of one name are
// joined once, not by copying the value so far for every line (which was
// quadratic: 100,000 lines took seconds), and a header_map over
// MaxHeaderBytes is refused as too large (431) without being built.
func TestHeaderMapLinesJoinedOnce(t *testing.T) {
	line := wireMsg(fHeaderMapLines, append(wireMsg(fHeaderKey, []byte("a")), wireMsg(fHeaderRawValue, []byte("b"))...))
	lines := func(n int) []byte { return wireMsg(fHTTPHeaderMap, bytes.Repeat(line, n)) }
	const n = 5000 // 20 KB of headers: under the limit
	b := wireRequest(nil, lines(n))
	var in checkInput
	if err := decodeCheckRequest(b, &in); err != nil || in.bad != nil || len(in.headers["a"]) != 2*n-1 {
		t.Fatalf("%v %v %d", err, in.bad, len(in.headers["a"]))
	}
	if allocs := testing.AllocsPerRun(3, func() { decodeCheckRequest(b, &checkInput{}) }); allocs > 100 {
		t.Errorf("wire: %d lines of one name take %.0f allocations", n, allocs)
	}
	var req authv3.CheckRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(3, func() { inputFromProto(&req, &checkInput{}) }); allocs > 100 {
		t.Errorf("proto: %d lines of one name take %.0f allocations", n, allocs)
	}
	big := wireRequest(nil, lines(MaxHeaderBytes/3+1))
	in = checkInput{}
	if err := decodeCheckRequest(big, &in); err != nil || in.bad == nil || !in.bad.TooLarge {
		t.Fatalf("headers over the limit: %v %v", err, in.bad)
	}
	if err := proto.Unmarshal(big, &req); err != nil {
		t.Fatal(err)
	}
	in = checkInput{}
	if inputFromProto(&req, &in); in.bad == nil || !in.bad.TooLarge {
		t.Fatalf("headers over the limit, protobuf: %v", in.bad)
	}
}

// TestExtAuthzWireOneofs: the address oneofs are read as protobuf reads
// them — the last member wins (named_port after port_value is no port), a
// member of the wrong wire type is an unknown field.
func TestExtAuthzWireOneofs(t *testing.T) {
	sock, _ := proto.Marshal(&corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}})
	named := append(append([]byte(nil), sock...), wireMsg(4, []byte("http"))...)
	pipeAsVarint := protowire.AppendVarint(protowire.AppendTag(nil, fAddressPipe, protowire.VarintType), 1)
	for name, addr := range map[string][]byte{
		"named port after port":     wireMsg(fAddressSocket, named),
		"pipe of another wire type": append(wireMsg(fAddressSocket, sock), pipeAsVarint...),
		"pipe after socket":         append(wireMsg(fAddressSocket, sock), wireMsg(fAddressPipe, wireMsg(1, []byte("/run/x")))...),
	} {
		t.Run(name, func(t *testing.T) {
			compareDecoders(t, wireRequest(wireMsg(fPeerAddress, addr)), true)
		})
	}
}

// TestWireStringsDoNotPinTheRequest: the short strings a decision keeps
// (method, path, host, scheme, principal, headers: some go into the audit
// record, which waits in the writer's queue) are copies, not views of the
// request's bytes, which may be megabytes of body.
func TestWireStringsDoNotPinTheRequest(t *testing.T) {
	src := append(wireMsg(fPeerPrincipal, []byte("spiffe://example.org/x")), wireMsg(fPeerAddress, wireMsg(fAddressSocket, wireMsg(fSocketAddress, []byte("10.0.0.7"))))...)
	hdr := wireMsg(fHTTPHeaders, append(wireMsg(fHeaderKey, []byte("x-a")), wireMsg(fHeaderValue, []byte("v"))...))
	hm := wireMsg(fHTTPHeaderMap, wireMsg(fHeaderMapLines, append(wireMsg(fHeaderKey, []byte("x-b")), wireMsg(fHeaderRawValue, []byte("w"))...)))
	for name, b := range map[string][]byte{
		"headers":    wireRequest(src, wireMsg(fHTTPHost, []byte("kb")), wireMsg(fHTTPScheme, []byte("https")), hdr, wireMsg(fHTTPRawBody, make([]byte, 1<<20))),
		"header map": wireRequest(src, hm, wireMsg(fHTTPRawBody, make([]byte, 1<<20))),
	} {
		var in checkInput
		if err := decodeCheckRequest(b, &in); err != nil {
			t.Fatal(err)
		}
		lo, hi := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))+uintptr(len(b))
		check := func(what, s string) {
			if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); len(s) > 0 && p >= lo && p < hi {
				t.Errorf("%s: %s %q is a view of the %d-byte request", name, what, s, len(b))
			}
		}
		check("method", in.method)
		check("path", in.path)
		check("host", in.host)
		check("scheme", in.scheme)
		check("principal", in.principal)
		for k, v := range in.headers {
			check("header name", k)
			check("header value", v)
		}
	}
}

// BenchmarkCheckRequestDecode reads an Envoy-like CheckRequest as the
// daemon's ext_authz server does (wire) and as protobuf's decoder does
// (proto, what a server with the generated service pays).
func BenchmarkCheckRequestDecode(b *testing.B) {
	raw, err := proto.Marshal(envoyLike())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in checkInput
			if err := decodeCheckRequest(raw, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req authv3.CheckRequest
			if err := proto.Unmarshal(raw, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
