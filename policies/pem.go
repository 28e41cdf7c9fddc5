package policies

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentid/agentid/svid"
)

// PeerFromPEM reads a peer from PEM data whose first CERTIFICATE block is
// an X.509-SVID: its SPIFFE ID and, when it carries them, its task claims,
// validated at now (zero: at the certificate's NotBefore). It does not
// verify the certificate chain: use it to ask the policy about a saved
// SVID, never to authenticate one.
func PeerFromPEM(data []byte, now time.Time) (Peer, error) {
	var cert *x509.Certificate
	for cert == nil {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return Peer{}, errors.New("no PEM CERTIFICATE block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		var err error
		if cert, err = x509.ParseCertificate(block.Bytes); err != nil {
			return Peer{}, err
		}
	}
	id, err := x509svid.IDFromCert(cert)
	if err != nil {
		return Peer{}, fmt.Errorf("not an X.509-SVID: %w", err)
	}
	if now.IsZero() {
		now = cert.NotBefore
	}
	c, found, err := svid.FromCertificate(cert, svid.WithTime(now))
	if err != nil {
		return Peer{}, err
	}
	p := Peer{ID: id}
	if found {
		p.Claims = &c
	}
	return p, nil
}
