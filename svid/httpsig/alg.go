package httpsig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/asn1"
	"fmt"
	"math/big"
)

// Algorithms (RFC 9421 §3.3).
const (
	AlgECDSAP256   = "ecdsa-p256-sha256"
	AlgECDSAP384   = "ecdsa-p384-sha384"
	AlgEd25519     = "ed25519"
	AlgRSAPSS      = "rsa-pss-sha512"
	AlgRSAV15      = "rsa-v1_5-sha256"
	AlgHMACSHA256  = "hmac-sha256"
	rsaPSSSaltSize = 64
)

// AlgorithmOf is the algorithm for a public key: ecdsa-p256-sha256 for
// P-256 (SPIRE's default X.509-SVID key), ecdsa-p384-sha384, ed25519, and
// rsa-pss-sha512 for RSA. "" for anything else.
func AlgorithmOf(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return AlgECDSAP256
		case elliptic.P384():
			return AlgECDSAP384
		}
	case ed25519.PublicKey:
		return AlgEd25519
	case *rsa.PublicKey:
		return AlgRSAPSS
	}
	return ""
}

// keyFits reports whether alg can be used with pub.
func keyFits(alg string, pub crypto.PublicKey) bool {
	if alg == AlgRSAV15 {
		_, ok := pub.(*rsa.PublicKey)
		return ok
	}
	return alg != "" && AlgorithmOf(pub) == alg
}

// Sign signs base with key using alg (an asymmetric algorithm).
func Sign(key crypto.Signer, alg string, base []byte) ([]byte, error) {
	if !keyFits(alg, key.Public()) {
		return nil, fmt.Errorf("httpsig: algorithm %q does not fit a %T key", alg, key.Public())
	}
	switch alg {
	case AlgECDSAP256, AlgECDSAP384:
		h, size := digest(alg, base)
		der, err := key.Sign(rand.Reader, h, hashOf(alg))
		if err != nil {
			return nil, err
		}
		return ecdsaRaw(der, size)
	case AlgEd25519:
		return key.Sign(rand.Reader, base, crypto.Hash(0))
	case AlgRSAPSS:
		h, _ := digest(alg, base)
		return key.Sign(rand.Reader, h, &rsa.PSSOptions{SaltLength: rsaPSSSaltSize, Hash: crypto.SHA512})
	case AlgRSAV15:
		h, _ := digest(alg, base)
		return key.Sign(rand.Reader, h, crypto.SHA256)
	}
	return nil, fmt.Errorf("httpsig: algorithm %q cannot sign", alg)
}

// Verify checks sig over base with key: a public key, or the shared
// secret ([]byte) for hmac-sha256.
func Verify(key any, alg string, base, sig []byte) error {
	if secret, ok := key.([]byte); ok {
		if alg != AlgHMACSHA256 {
			return fail(ReasonAlgorithm, "a shared secret is only for %s", AlgHMACSHA256)
		}
		m := hmac.New(sha256.New, secret)
		m.Write(base)
		if subtle.ConstantTimeCompare(m.Sum(nil), sig) != 1 {
			return fail(ReasonInvalid, "the HMAC does not match")
		}
		return nil
	}
	if !keyFits(alg, key) {
		return fail(ReasonAlgorithm, "algorithm %q does not fit the key (%s)", alg, describeKey(key))
	}
	ok := false
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		h, size := digest(alg, base)
		if len(sig) == 2*size {
			r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
			ok = ecdsa.Verify(k, h, r, s)
		}
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, base, sig)
	case *rsa.PublicKey:
		h, _ := digest(alg, base)
		if alg == AlgRSAPSS {
			ok = rsa.VerifyPSS(k, crypto.SHA512, h, sig, &rsa.PSSOptions{SaltLength: rsaPSSSaltSize}) == nil
		} else {
			ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, h, sig) == nil
		}
	}
	if !ok {
		return fail(ReasonInvalid, "the %s signature does not verify with the key", alg)
	}
	return nil
}

func describeKey(k any) string {
	if a := AlgorithmOf(k); a != "" {
		return a
	}
	return fmt.Sprintf("%T", k)
}

func hashOf(alg string) crypto.Hash {
	switch alg {
	case AlgECDSAP384:
		return crypto.SHA384
	case AlgRSAPSS:
		return crypto.SHA512
	}
	return crypto.SHA256
}

// digest hashes base for alg; size is an ECDSA scalar's byte length.
func digest(alg string, base []byte) (h []byte, size int) {
	switch hashOf(alg) {
	case crypto.SHA384:
		s := sha512.Sum384(base)
		return s[:], 48
	case crypto.SHA512:
		s := sha512.Sum512(base)
		return s[:], 0
	}
	s := sha256.Sum256(base)
	return s[:], 32
}

// ecdsaRaw converts an ASN.1 ECDSA signature to r||s (RFC 9421 §3.3.4).
func ecdsaRaw(der []byte, size int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("httpsig: ECDSA signature: %w", err)
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}
