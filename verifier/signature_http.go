package verifier

import (
	"bytes"
	"strconv"

	"fmt"
	"io"
	"net/http"

	"github.com/agentid/agentid/svid/httpsig"
)

// MaxSignedBody bounds the body of a signed request that the middleware
// and the proxy read to check its Content-Digest (8 MiB): larger ones are
// refused as too large.
const MaxSignedBody = 8 << 20

// unsignedRequest stands for a request without signature fields that a
// front-end could have passed: the stage sees no signature in it (and
// refuses it as signature_missing where one is required). Shared and
// never written, so that unsigned requests cost no allocation.
var unsignedRequest = &SignedRequest{BodyKnown: true}

// signedRequest is the request r for the signature stage: its body is
// read (and put back for the handler or the upstream) only when r carries
// a signature; body is the one already read for MCP, if read.
func signedRequest(r *http.Request, body []byte, bodyRead bool) (*SignedRequest, *InputError) {
	if !HasSignature(r.Header) {
		return unsignedRequest, nil
	}
	s := &SignedRequest{Message: *httpsig.RequestMessage(r), Body: body, BodyKnown: bodyRead}
	if bodyRead {
		return s, nil
	}
	s.BodyKnown = true
	if r.Body == nil || r.Body == http.NoBody {
		return s, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxSignedBody+1))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	switch {
	case err != nil:
		return s, badInput("body", "reading the body: %v", err)
	case len(b) > MaxSignedBody:
		return s, &InputError{What: "body", Detail: fmt.Sprintf("a signed body over %d bytes", MaxSignedBody), TooLarge: true}
	}
	s.Body = b
	return s, nil
}

// extAuthzSigned is the request Envoy describes, for the signature stage.
// Envoy passes the body only with with_request_body, and an HTTP/2 or
// HTTP/3 request need not declare its length, so the body is known only
// when (bodyKnownExtAuthz) Envoy passed it whole, or the request says
// explicitly that it has none.
func extAuthzSigned(in *checkInput) *SignedRequest {
	headers := in.headers
	_, sig := headers["signature"]
	_, input := headers["signature-input"]
	if !sig && !input {
		return unsignedRequest
	}
	s := &SignedRequest{Message: httpsig.Message{Method: in.method,
		TargetURI: in.scheme + "://" + in.host + in.path, Header: make(http.Header, len(headers))}}
	for k, v := range headers {
		s.Message.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	s.Body = in.body
	s.BodyKnown = bodyKnownExtAuthz(in.method, in.size, len(s.Body), headers)
	return s
}

// bodyKnownExtAuthz: the body Envoy describes is the request's whole body
// when Envoy passed one (raw_body or body, and not x-envoy-auth-partial-body:
// true), or the request has none: content-length: 0 stated, or a method
// without body semantics (GET, HEAD, DELETE, OPTIONS, TRACE) of size 0,
// neither with a transfer-encoding. Anything else — in particular a
// request of unknown size (-1, no content-length, as HTTP/2 allows) whose
// body Envoy did not pass — is not known to be empty. The request's own
// x-envoy-auth-partial-body: false is not trusted (a client can send it
// when the filter has no with_request_body).
func bodyKnownExtAuthz(method string, size int64, bodyLen int, headers map[string]string) bool {
	if headers["x-envoy-auth-partial-body"] == "true" {
		return false
	}
	if bodyLen > 0 {
		return true
	}
	if headers["transfer-encoding"] != "" {
		return false
	}
	if cl, ok := headers["content-length"]; ok {
		n, err := strconv.ParseInt(cl, 10, 64)
		return err == nil && n == 0
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions, http.MethodTrace:
		return size == 0
	}
	return false
}
