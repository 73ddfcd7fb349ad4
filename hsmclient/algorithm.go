package hsmclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

// Algorithm names a message signature scheme, spelled as hsmctl's --alg flag takes it.
type Algorithm string

// Signature algorithms.
const (
	AlgECDSASHA256    Algorithm = "ecdsa-sha256"     // ECDSA over SHA-256, ASN.1 DER (P-256, secp256k1)
	AlgECDSASHA384    Algorithm = "ecdsa-sha384"     // ECDSA over SHA-384, ASN.1 DER (P-384)
	AlgEd25519        Algorithm = "ed25519"          // pure Ed25519
	AlgRSAPSSSHA256   Algorithm = "rsa-pss-sha256"   // RSASSA-PSS, SHA-256, MGF1-SHA-256, salt = 32 bytes (JWS PS256)
	AlgRSAPKCS1SHA256 Algorithm = "rsa-pkcs1-sha256" // RSASSA-PKCS1-v1_5 with SHA-256 (JWS RS256)
)

// ErrSignatureInvalid reports a signature that does not verify.
var ErrSignatureInvalid = errors.New("signature invalid")

// Algorithms lists every supported algorithm.
func Algorithms() []Algorithm {
	return []Algorithm{AlgECDSASHA256, AlgECDSASHA384, AlgEd25519, AlgRSAPSSSHA256, AlgRSAPKCS1SHA256}
}

// ParseAlgorithm checks an algorithm name such as "ecdsa-sha256".
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms() {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("%w: unknown algorithm %q (want one of %v)", ErrInvalidInput, s, Algorithms())
}

// DefaultAlgorithm returns the usual algorithm for a key type.
func DefaultAlgorithm(t KeyType) (Algorithm, error) {
	switch t {
	case KeyECP256, KeyECSecp256k1:
		return AlgECDSASHA256, nil
	case KeyECP384:
		return AlgECDSASHA384, nil
	case KeyEd25519:
		return AlgEd25519, nil
	case KeyRSA2048, KeyRSA3072, KeyRSA4096:
		return AlgRSAPSSSHA256, nil
	}
	return "", fmt.Errorf("%w: %s keys do not sign", ErrWrongKeyType, t)
}

// Hash returns the hash the algorithm signs, or 0 for Ed25519, which signs
// the message itself.
func (a Algorithm) Hash() crypto.Hash {
	switch a {
	case AlgEd25519:
		return 0
	case AlgECDSASHA384:
		return crypto.SHA384
	}
	return crypto.SHA256
}

// SignerOpts returns the crypto.SignerOpts that Signer.Sign takes for this algorithm.
func (a Algorithm) SignerOpts() crypto.SignerOpts {
	if a == AlgRSAPSSSHA256 {
		return &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	}
	return a.Hash()
}

// Digest returns what the algorithm signs for msg: its hash, or msg itself for Ed25519.
func (a Algorithm) Digest(msg []byte) []byte {
	h := a.Hash()
	if h == 0 {
		return msg
	}
	d := h.New()
	d.Write(msg)
	return d.Sum(nil)
}

// AlgorithmsFor lists the algorithms that can sign with a key type.
func AlgorithmsFor(t KeyType) []Algorithm {
	switch t {
	case KeyECP256, KeyECP384, KeyECSecp256k1:
		return []Algorithm{AlgECDSASHA256, AlgECDSASHA384}
	case KeyEd25519:
		return []Algorithm{AlgEd25519}
	case KeyRSA2048, KeyRSA3072, KeyRSA4096:
		return []Algorithm{AlgRSAPSSSHA256, AlgRSAPKCS1SHA256}
	}
	return nil
}

// fits reports whether the algorithm can be used with a public key.
func (a Algorithm) fits(pub crypto.PublicKey) bool {
	switch pub.(type) {
	case *ecdsa.PublicKey, *secp256k1.PublicKey:
		return a == AlgECDSASHA256 || a == AlgECDSASHA384
	case ed25519.PublicKey:
		return a == AlgEd25519
	case *rsa.PublicKey:
		return a == AlgRSAPSSSHA256 || a == AlgRSAPKCS1SHA256
	}
	return false
}

// SignMessage hashes msg as alg requires and signs it in the HSM.
func (s *Signer) SignMessage(ctx context.Context, alg Algorithm, msg []byte) ([]byte, error) {
	if len(msg) == 0 {
		return nil, &OpError{Op: "sign", Err: fmt.Errorf("%w: empty message", ErrInvalidInput)}
	}
	return s.SignDigest(ctx, alg, alg.Digest(msg))
}

// SignDigest signs what alg.Digest returned (a hash computed elsewhere, for
// instance while streaming a large input; for Ed25519 the message itself).
func (s *Signer) SignDigest(ctx context.Context, alg Algorithm, digest []byte) ([]byte, error) {
	if !alg.fits(s.key.Public) {
		return nil, &OpError{Op: "sign", Err: fmt.Errorf("%w: %s cannot sign with %s key %q", ErrWrongKeyType, alg, s.key.Type, s.key.Label)}
	}
	return s.SignContext(ctx, digest, alg.SignerOpts())
}

// VerifyMessage checks a signature made by SignMessage, in software with the
// Go standard library (and decred's secp256k1 for that curve). It returns nil,
// ErrSignatureInvalid, or ErrWrongKeyType when alg does not fit the key.
func VerifyMessage(pub crypto.PublicKey, alg Algorithm, msg, sig []byte) error {
	return VerifyDigest(pub, alg, alg.Digest(msg), sig)
}

// VerifyDigest is VerifyMessage for a digest computed with alg.Digest.
func VerifyDigest(pub crypto.PublicKey, alg Algorithm, digest, sig []byte) error {
	if !alg.fits(pub) {
		return fmt.Errorf("%w: %s does not fit a %T", ErrWrongKeyType, alg, pub)
	}
	var ok bool
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest, sig)
	case *secp256k1.PublicKey:
		parsed, err := secpecdsa.ParseDERSignature(sig)
		ok = err == nil && parsed.Verify(digest, k)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, digest, sig)
	case *rsa.PublicKey:
		if pss, isPSS := alg.SignerOpts().(*rsa.PSSOptions); isPSS {
			ok = rsa.VerifyPSS(k, alg.Hash(), digest, sig, pss) == nil
		} else {
			ok = rsa.VerifyPKCS1v15(k, alg.Hash(), digest, sig) == nil
		}
	}
	if !ok {
		return ErrSignatureInvalid
	}
	return nil
}
