package verifier

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
	"unsafe"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// checkInput is what the verifier reads of an Envoy CheckRequest: the
// same from a decoded authv3.CheckRequest (Check) and straight from the
// wire (the server NewServer makes).
type checkInput struct {
	hasHTTP                    bool
	certificate, principal     string
	source                     netip.AddrPort
	method, path, scheme, host string
	size                       int64
	// headers are the request headers: HttpRequest.headers, or
	// header_map (Envoy's encode_raw_headers) with the lines of one name
	// joined by "," as Envoy joins them in headers.
	headers map[string]string
	body    []byte // raw_body, else body
	// bad is why the request cannot be decided (both header forms sent).
	bad *InputError
}

// inputFromProto reads a decoded CheckRequest.
func inputFromProto(req *authv3.CheckRequest, in *checkInput) {
	src := req.GetAttributes().GetSource()
	in.certificate, in.principal = src.GetCertificate(), src.GetPrincipal()
	if sa := src.GetAddress().GetSocketAddress(); sa != nil {
		in.source = addrPort(sa.GetAddress(), sa.GetPortValue())
	}
	h := req.GetAttributes().GetRequest().GetHttp()
	if h == nil {
		return
	}
	in.hasHTTP = true
	in.method, in.path, in.scheme, in.host, in.size = h.GetMethod(), h.GetPath(), h.GetScheme(), h.GetHost(), h.GetSize()
	in.headers = h.GetHeaders()
	if hm := h.GetHeaderMap(); hm != nil {
		var lines rawHeaders
		for _, hv := range hm.GetHeaders() {
			v := hv.GetRawValue()
			if len(v) == 0 {
				v = []byte(hv.GetValue())
			}
			lines.add(hv.GetKey(), string(v))
		}
		in.mergeHeaderMap(&lines)
	}
	in.body = h.GetRawBody()
	if len(in.body) == 0 && h.GetBody() != "" {
		in.body = []byte(h.GetBody())
	}
}

// rawHeaders collects header_map's lines, joined once at the end (not
// line by line, which is quadratic in the lines of one name), and stops
// collecting once they exceed MaxHeaderBytes.
type rawHeaders struct {
	lines    map[string][]string
	n        int // bytes of names and values
	tooLarge bool
}

func (r *rawHeaders) add(k, v string) {
	if r.tooLarge {
		return
	}
	if r.n += len(k) + len(v) + 1; r.n > MaxHeaderBytes {
		r.tooLarge = true
		r.lines = nil
		return
	}
	if r.lines == nil {
		r.lines = make(map[string][]string, 8)
	}
	if !isLower(k) {
		k = strings.ToLower(k)
	}
	r.lines[k] = append(r.lines[k], v)
}

// mergeHeaderMap takes header_map's headers, refusing a request that
// also has headers (Envoy sends one form or the other: two that could
// disagree are not decided).
func (in *checkInput) mergeHeaderMap(r *rawHeaders) {
	if r.tooLarge {
		in.bad = &InputError{What: "request headers", Detail: fmt.Sprintf("header_map exceeds %d bytes", MaxHeaderBytes), TooLarge: true}
		return
	}
	if len(r.lines) == 0 {
		return
	}
	if len(in.headers) > 0 {
		in.bad = badInput("request headers", "both headers and header_map are set")
		return
	}
	in.headers = make(map[string]string, len(r.lines))
	for k, vs := range r.lines {
		in.headers[k] = strings.Join(vs, ",")
	}
}

func addrPort(a string, port uint32) netip.AddrPort {
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addr, uint16(port))
}

// Field numbers of envoy.service.auth.v3 and envoy.config.core.v3
// messages the wire decoder reads.
const (
	fCheckAttributes = 1 // CheckRequest.attributes

	fAttrSource  = 1 // AttributeContext.source
	fAttrRequest = 4 // AttributeContext.request

	fPeerAddress     = 1 // Peer.address
	fPeerPrincipal   = 4
	fPeerCertificate = 5

	fAddressSocket   = 1 // Address.socket_address
	fAddressPipe     = 2 // Address.pipe
	fAddressInternal = 3 // Address.envoy_internal_address
	fSocketAddress   = 2 // SocketAddress.address
	fSocketPortVal   = 3 // SocketAddress.port_value
	fSocketNamedPort = 4 // SocketAddress.named_port
	fRequestHTTP     = 2 // Request.http
	fHTTPMethod      = 2
	fHTTPHeaders     = 3
	fHTTPPath        = 4
	fHTTPHost        = 5
	fHTTPScheme      = 6
	fHTTPSize        = 9
	fHTTPBody        = 11
	fHTTPRawBody     = 12
	fHTTPHeaderMap   = 13
	fHeaderMapLines  = 1 // HeaderMap.headers
	fHeaderKey       = 1 // HeaderValue.key, and a map entry's key
	fHeaderValue     = 2 // HeaderValue.value, and a map entry's value
	fHeaderRawValue  = 3
)

// wireReader decodes the fields of a CheckRequest the verifier reads from
// the message's bytes, skipping the rest (destination, metadata,
// context extensions, TLS session…) without decoding them. The short
// strings it makes are copied into two small arenas of their own, one for
// the request line (method, path, host, scheme, principal: the audit
// record keeps the action, and waits in the writer's queue) and one for
// the headers (which only the decision reads; the signature stage clones
// what it records), so that what outlives the check does not keep the
// whole request alive; the certificate (the Authenticator's cache clones
// its keys) and the body are views of the message's buffer, which is
// never written after it is read (the codec hands over a copy of its own).
//
// It is stricter than protobuf's decoder where Envoy never differs: a
// field it reads that arrives twice, or with another wire type, is an
// error (protobuf would keep the last or merge, or treat it as unknown);
// strings must be UTF-8 as proto3 requires.
type wireReader struct {
	in       *checkInput
	lines    rawHeaders
	line, hd []byte // the arenas
}

// keep copies v into arena and returns the copy as a string: the bytes
// it views are never written again (a full arena is replaced, not
// grown in place, and appends only go past what was handed out).
func keep(arena *[]byte, v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if cap(*arena)-len(*arena) < len(v) {
		*arena = make([]byte, 0, max(2*cap(*arena), len(v), 256))
	}
	start := len(*arena)
	*arena = append(*arena, v...)
	return unsafe.String(&(*arena)[start], len(v))
}

// keepUTF8 is keep for a proto3 string, which must be UTF-8.
func keepUTF8(arena *[]byte, v []byte) (string, error) {
	if !utf8.Valid(v) {
		return "", errNotUTF8
	}
	return keep(arena, v), nil
}

func decodeCheckRequest(b []byte, in *checkInput) error {
	r := wireReader{in: in}
	if err := r.message(b, "CheckRequest", r.checkRequest); err != nil {
		return err
	}
	in.mergeHeaderMap(&r.lines)
	return nil
}

// message calls field for each field of the message b, refusing a
// repeated occurrence of a field number that field reads (once reports
// whether a number is read once).
func (r *wireReader) message(b []byte, name string, field func(num protowire.Number, typ protowire.Type, v []byte, x uint64) (read bool, err error)) error {
	var seen uint32 // field numbers below 32 read so far
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%s: %w", name, protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%s field %d: %w", name, num, protowire.ParseError(n))
		}
		b = b[n:]
		read, err := field(num, typ, v, x)
		if err != nil {
			return fmt.Errorf("%s field %d: %w", name, num, err)
		}
		if read && num < 32 {
			if seen&(1<<num) != 0 {
				return fmt.Errorf("%s field %d: repeated", name, num)
			}
			seen |= 1 << num
		}
	}
	return nil
}

var errWireType = fmt.Errorf("unexpected wire type")

var errNotUTF8 = fmt.Errorf("string is not valid UTF-8")

// view is v as a string sharing its memory (v is never written again),
// which must be UTF-8: for the certificate, which the Authenticator's
// cache copies when it keeps it.
func view(v []byte) (string, error) {
	if !utf8.Valid(v) {
		return "", errNotUTF8
	}
	return unsafe.String(unsafe.SliceData(v), len(v)), nil
}

func bytesField(typ protowire.Type) error {
	if typ != protowire.BytesType {
		return errWireType
	}
	return nil
}

func (r *wireReader) checkRequest(num protowire.Number, typ protowire.Type, v []byte, _ uint64) (bool, error) {
	if num != fCheckAttributes {
		return false, nil
	}
	if err := bytesField(typ); err != nil {
		return true, err
	}
	return true, r.message(v, "AttributeContext", r.attributes)
}

func (r *wireReader) attributes(num protowire.Number, typ protowire.Type, v []byte, _ uint64) (bool, error) {
	switch num {
	case fAttrSource:
		if err := bytesField(typ); err != nil {
			return true, err
		}
		return true, r.message(v, "Peer", r.peer)
	case fAttrRequest:
		if err := bytesField(typ); err != nil {
			return true, err
		}
		return true, r.message(v, "Request", r.request)
	}
	return false, nil
}

func (r *wireReader) peer(num protowire.Number, typ protowire.Type, v []byte, _ uint64) (bool, error) {
	var err error
	switch num {
	case fPeerAddress:
		if err = bytesField(typ); err == nil {
			err = r.message(v, "Address", r.address)
		}
	case fPeerPrincipal:
		if err = bytesField(typ); err == nil {
			r.in.principal, err = keepUTF8(&r.line, v)
		}
	case fPeerCertificate:
		if err = bytesField(typ); err == nil {
			r.in.certificate, err = view(v)
		}
	default:
		return false, nil
	}
	return true, err
}

func (r *wireReader) address(num protowire.Number, typ protowire.Type, v []byte, _ uint64) (bool, error) {
	if (num == fAddressPipe || num == fAddressInternal) && typ == protowire.BytesType {
		r.in.source = netip.AddrPort{} // the oneof's last member wins
		return false, nil
	}
	if num != fAddressSocket {
		return false, nil
	}
	if err := bytesField(typ); err != nil {
		return true, err
	}
	var addr string
	var port uint32
	err := r.message(v, "SocketAddress", func(num protowire.Number, typ protowire.Type, v []byte, x uint64) (bool, error) {
		switch num {
		case fSocketAddress:
			if err := bytesField(typ); err != nil {
				return true, err
			}
			s, err := view(v) // parsed at once
			addr = s
			return true, err
		case fSocketPortVal:
			if typ != protowire.VarintType {
				return true, errWireType
			}
			port = uint32(x)
			return true, nil
		case fSocketNamedPort:
			if typ == protowire.BytesType {
				port = 0 // the port oneof's last member wins; a named port is no number
			}
		}
		return false, nil
	})
	r.in.source = addrPort(addr, port)
	return true, err
}

func (r *wireReader) request(num protowire.Number, typ protowire.Type, v []byte, _ uint64) (bool, error) {
	if num != fRequestHTTP {
		return false, nil
	}
	if err := bytesField(typ); err != nil {
		return true, err
	}
	r.in.hasHTTP = true
	return true, r.message(v, "HttpRequest", r.http)
}

func (r *wireReader) http(num protowire.Number, typ protowire.Type, v []byte, x uint64) (bool, error) {
	in := r.in
	var err error
	switch num {
	case fHTTPMethod, fHTTPPath, fHTTPHost, fHTTPScheme, fHTTPBody:
		if err = bytesField(typ); err != nil {
			return true, err
		}
		if num == fHTTPBody {
			if !utf8.Valid(v) {
				return true, errNotUTF8
			}
			if len(in.body) == 0 { // raw_body wins
				in.body = v
			}
			return true, nil
		}
		var s string
		if s, err = keepUTF8(&r.line, v); err != nil {
			return true, err
		}
		switch num {
		case fHTTPMethod:
			in.method = s
		case fHTTPPath:
			in.path = s
		case fHTTPHost:
			in.host = s
		case fHTTPScheme:
			in.scheme = s
		}
		return true, nil
	case fHTTPRawBody:
		if err = bytesField(typ); err == nil && len(v) > 0 {
			in.body = v
		}
		return true, err
	case fHTTPSize:
		if typ != protowire.VarintType {
			return true, errWireType
		}
		in.size = int64(x)
		return true, nil
	case fHTTPHeaders: // a map entry: repeated
		if err = bytesField(typ); err != nil {
			return false, err
		}
		k, val, err := r.pair(v, "HeadersEntry", false)
		if err != nil {
			return false, err
		}
		if in.headers == nil {
			in.headers = make(map[string]string, 8)
		}
		in.headers[k] = val // the last of one key wins, as in protobuf
		return false, nil
	case fHTTPHeaderMap:
		if err = bytesField(typ); err != nil {
			return true, err
		}
		return true, r.message(v, "HeaderMap", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) (bool, error) {
			if num != fHeaderMapLines {
				return false, nil
			}
			if err := bytesField(typ); err != nil {
				return false, err
			}
			k, val, err := r.pair(v, "HeaderValue", true)
			if err == nil {
				r.lines.add(k, val)
			}
			return false, err
		})
	}
	return false, nil
}

// pair reads a map entry (key 1, value 2) or a HeaderValue (key 1,
// value 2, raw_value 3: raw_value wins when set; it is bytes, not
// checked for UTF-8, as Envoy sends header values as they came).
func (r *wireReader) pair(b []byte, name string, header bool) (k, v string, err error) {
	var raw []byte
	err = r.message(b, name, func(num protowire.Number, typ protowire.Type, f []byte, _ uint64) (bool, error) {
		switch {
		case num == fHeaderKey, num == fHeaderValue, header && num == fHeaderRawValue:
		default:
			return false, nil
		}
		if err := bytesField(typ); err != nil {
			return true, err
		}
		var err error
		switch num {
		case fHeaderKey:
			k, err = keepUTF8(&r.hd, f)
		case fHeaderValue:
			v, err = keepUTF8(&r.hd, f)
		default:
			raw = f
		}
		return true, err
	})
	if len(raw) > 0 {
		v = keep(&r.hd, raw)
	}
	return k, v, err
}

// wireMessage is a message as its bytes, for extAuthzCodec: a request
// the handler decodes itself, or a response encoded before.
type wireMessage struct{ b []byte }

// extAuthzCodec is gRPC's protobuf codec that also passes wireMessages
// through as they are.
type extAuthzCodec struct{ proto encoding.CodecV2 }

func (c extAuthzCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*wireMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(w.b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c extAuthzCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if w, ok := v.(*wireMessage); ok {
		w.b = data.Materialize() // a copy: the strings decoded from it share it
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (extAuthzCodec) Name() string { return grpcproto.Name }

// NewServer is a gRPC server with the Authorization service registered
// that reads CheckRequests straight from their bytes — only the fields
// the verifier reads, without building the whole message — and answers
// with OK responses encoded once per peer and deciding rule. Decisions
// are the same as Check's (TestExtAuthzWireDecodesAlike). opts are added
// (credentials, interceptors, limits); other services may be registered
// on the server too (its codec is protobuf's for every other message).
// Register adds the plain generated service to a server of your own
// instead.
func (e *ExtAuthz) NewServer(opts ...grpc.ServerOption) *grpc.Server {
	c := extAuthzCodec{proto: encoding.GetCodecV2(grpcproto.Name)}
	s := grpc.NewServer(append([]grpc.ServerOption{grpc.ForceServerCodecV2(c)}, opts...)...)
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
		HandlerType: (*authv3.AuthorizationServer)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Check", Handler: e.wireHandler}},
		Metadata:    authv3.Authorization_ServiceDesc.Metadata,
	}, e)
	return s
}

const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

func (e *ExtAuthz) wireHandler(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	req := new(wireMessage)
	if err := dec(req); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return e.checkWire(ctx, req)
	}
	return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: e, FullMethod: checkMethod}, func(ctx context.Context, req any) (any, error) {
		return e.checkWire(ctx, req.(*wireMessage))
	})
}

func (e *ExtAuthz) checkWire(ctx context.Context, req *wireMessage) (any, error) {
	c := getPending()
	defer c.release()
	in := &c.ext
	if err := decodeCheckRequest(req.b, in); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "verifier: cannot read the CheckRequest: %v", err)
	}
	resp, wire := e.check(ctx, in, c)
	if wire != nil {
		return &wireMessage{b: wire}, nil
	}
	return resp, nil
}
