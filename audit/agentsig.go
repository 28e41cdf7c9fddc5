package audit

// AgentSignature is the agent's own RFC 9421 signature of the request a
// decision record is about (issue 17, svid/httpsig): for a verified
// signature, its label, the signature base the verifier rebuilt from the
// request as received (it holds @method, @target-uri, the Content-Digest,
// the signer's certificate chain and the @signature-params) and the
// signature, so that `agentid audit verify-receipt` can check it with the
// trust bundle alone. For a refused one, Input and Value are the
// Signature-Input and Signature fields as received (bounded), and Base is
// empty. Body is the request body, only when the operator opted in
// (signatures { record_body = true }) and it was within the size bound.
type AgentSignature struct {
	Label string `json:"label,omitempty"`
	Base  string `json:"base,omitempty"`
	Sig   []byte `json:"sig,omitempty"`
	Input string `json:"input,omitempty"`
	Value string `json:"value,omitempty"`
	Body  []byte `json:"body,omitempty"`
}
