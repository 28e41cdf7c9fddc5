package verifier

import "net/http"

// ProxyOnlyHeaders are request headers with which a trusted proxy in
// front of a service tells it who the client is, where it connected from
// or what URL it asked for: the client certificate (RFC 9440's
// Client-Cert and Client-Cert-Chain, Envoy's X-Forwarded-Client-Cert and
// common spellings of others), the client's address (read by chi's
// RealIP, gorilla's ProxyHeaders, Rails' RemoteIp and others) and the
// original URL or prefix (X-Original-URL and X-Rewrite-URL, honoured by
// Symfony and IIS rewrites, X-Forwarded-Prefix by Spring and others), and
// the user an authenticating proxy vouches for (oauth2-proxy's
// X-Forwarded-User and X-Auth-Request-*, Remote-User). The
// policy decides none of them, so a client must not be able to set them:
// the proxy and the MCP gateway delete them before forwarding (Go's
// ReverseProxy already drops Forwarded and X-Forwarded-For/-Host/-Proto,
// and the proxy sets X-Forwarded-For/-Proto itself). In canonical form.
var ProxyOnlyHeaders = []string{
	// the client certificate
	"Client-Cert", "Client-Cert-Chain", "X-Forwarded-Client-Cert", "X-Forwarded-Tls-Client-Cert", "X-Forwarded-Tls-Client-Cert-Info",
	"X-Client-Cert", "X-Ssl-Client-Cert", "Ssl-Client-Cert", "X-Ssl-Cert", "X-Ssl-Client-Verify", "X-Ssl-Client-S-Dn",
	"X-Arr-Clientcert", "X-Amzn-Mtls-Clientcert", "X-Amzn-Mtls-Clientcert-Leaf",
	// the client's address
	"True-Client-Ip", "X-Real-Ip", "X-Client-Ip", "Client-Ip", "X-Cluster-Client-Ip", "Cf-Connecting-Ip", "Fastly-Client-Ip",
	"X-Original-Forwarded-For",
	// the original URL, host, method or scheme
	"X-Original-Url", "X-Rewrite-Url", "X-Original-Uri", "X-Forwarded-Uri", "X-Original-Method", "X-Original-Host", "X-Host",
	"X-Forwarded-Prefix", "X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Forwarded-Protocol",
	"X-Url-Scheme", "Front-End-Https",
	// a user an authenticating proxy vouches for
	"Remote-User", "X-Remote-User", "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
	"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Preferred-Username", "X-Auth-Request-Groups", "X-Auth-Request-Access-Token",
}

// DeleteProxyOnlyHeaders deletes ProxyOnlyHeaders from h.
func DeleteProxyOnlyHeaders(h http.Header) {
	for _, k := range ProxyOnlyHeaders {
		delete(h, k)
	}
}
