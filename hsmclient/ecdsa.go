package hsmclient

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"
	"math/big"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// DER encodings of the curve OIDs that go in CKA_EC_PARAMS.
var (
	oidP256      = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	oidP384      = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}
	oidSecp256k1 = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}
	oidEd25519   = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}
	// curveNameEdwards25519 is the PrintableString "edwards25519", which
	// PKCS#11 3.0 also allows in EC_PARAMS (SoftHSM stores it on private keys).
	curveNameEdwards25519 = append([]byte{0x13, 0x0c}, "edwards25519"...)
)

// ecFieldSize returns the byte length of the curve's field (and of r and s).
func ecFieldSize(t KeyType) int {
	if t == KeyECP384 {
		return 48
	}
	return 32
}

// parseECPoint decodes CKA_EC_POINT. Tokens normally return the point inside a
// DER OCTET STRING (long length form for big curves); some return the bare
// point. Both are tried by parsing, never by guessing from the first bytes,
// and the point must lie on the key's curve.
func parseECPoint(t KeyType, data []byte) (crypto.PublicKey, error) {
	var inner cryptobyte.String
	input := cryptobyte.String(data)
	if input.ReadASN1(&inner, asn1.OCTET_STRING) && input.Empty() {
		if pub, err := decodePoint(t, inner); err == nil {
			return pub, nil
		}
	}
	pub, err := decodePoint(t, data)
	if err != nil {
		return nil, fmt.Errorf("%w: CKA_EC_POINT of a %s key (%d bytes): %v", ErrInvalidInput, t, len(data), err)
	}
	return pub, nil
}

func decodePoint(t KeyType, point []byte) (crypto.PublicKey, error) {
	switch t {
	case KeyECP256:
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	case KeyECP384:
		return ecdsa.ParseUncompressedPublicKey(elliptic.P384(), point)
	case KeyECSecp256k1:
		if len(point) != 65 {
			return nil, fmt.Errorf("want a 65-byte uncompressed point")
		}
		return secp256k1.ParsePubKey(point)
	case KeyEd25519:
		return parseEd25519Point(point)
	}
	return nil, fmt.Errorf("%s is not an elliptic-curve key type", t)
}

// ecdsaRequest prepares CKM_ECDSA over a digest; the token returns raw r||s,
// which is converted to the ASN.1 DER that crypto.Signer promises.
func ecdsaRequest(key KeyInfo, digest []byte, opts crypto.SignerOpts) (signRequest, error) {
	if h := opts.HashFunc(); h != 0 && len(digest) != h.Size() { // SignContext has checked that h is available
		return signRequest{}, fmt.Errorf("%w: digest is %d bytes, %s needs %d", ErrInvalidInput, len(digest), h, h.Size())
	}
	if len(digest) == 0 || len(digest) > 64 {
		return signRequest{}, fmt.Errorf("%w: ECDSA needs a digest of 1 to 64 bytes, got %d", ErrInvalidInput, len(digest))
	}
	size := ecFieldSize(key.Type)
	return signRequest{
		mechanism: pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil),
		input:     digest,
		finish: func(raw []byte) ([]byte, error) {
			if len(raw) != 2*size {
				return nil, fmt.Errorf("token returned a %d-byte ECDSA signature, want %d", len(raw), 2*size)
			}
			return ECDSARawToASN1(raw)
		},
	}, nil
}

// ECDSARawToASN1 converts an ECDSA signature from r||s (PKCS#11, JOSE) to
// ASN.1 DER (Go, X.509, OpenSSL). r and s are the two halves of raw.
func ECDSARawToASN1(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 || len(raw) > 2*66 {
		return nil, fmt.Errorf("%w: raw ECDSA signature of %d bytes", ErrInvalidInput, len(raw))
	}
	r := new(big.Int).SetBytes(raw[:len(raw)/2])
	s := new(big.Int).SetBytes(raw[len(raw)/2:])
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.Bytes()
}

// ECDSAASN1ToRaw converts a DER ECDSA signature to r||s with each half
// left-padded to size bytes (32 for P-256 and secp256k1, 48 for P-384), the
// form JWS ES256/ES384/ES256K require.
func ECDSAASN1ToRaw(der []byte, size int) ([]byte, error) {
	if size < 1 || size > 66 {
		return nil, fmt.Errorf("%w: field size %d", ErrInvalidInput, size)
	}
	var inner cryptobyte.String
	r, s := new(big.Int), new(big.Int)
	input := cryptobyte.String(der)
	if !input.ReadASN1(&inner, asn1.SEQUENCE) || !input.Empty() ||
		!inner.ReadASN1Integer(r) || !inner.ReadASN1Integer(s) || !inner.Empty() {
		return nil, fmt.Errorf("%w: malformed ASN.1 ECDSA signature", ErrInvalidInput)
	}
	if r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > 8*size || s.BitLen() > 8*size {
		return nil, fmt.Errorf("%w: ECDSA signature values do not fit %d bytes", ErrInvalidInput, size)
	}
	raw := make([]byte, 2*size)
	r.FillBytes(raw[:size])
	s.FillBytes(raw[size:])
	return raw, nil
}
