package hsmclient

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

var (
	oidECPublicKey    = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidCurveSecp256k1 = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

// MarshalPublicKeyPEM encodes a public key returned by the client as a PEM
// "PUBLIC KEY" block (X.509 SubjectPublicKeyInfo), which OpenSSL reads.
// secp256k1 keys, which crypto/x509 does not know, are encoded by hand.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	var der []byte
	var err error
	if k, ok := pub.(*secp256k1.PublicKey); ok {
		der, err = asn1.Marshal(struct {
			Algorithm struct {
				Algorithm, Curve asn1.ObjectIdentifier
			}
			PublicKey asn1.BitString
		}{
			Algorithm: struct{ Algorithm, Curve asn1.ObjectIdentifier }{
				Algorithm: oidECPublicKey,
				Curve:     oidCurveSecp256k1,
			},
			PublicKey: asn1.BitString{Bytes: k.SerializeUncompressed(), BitLength: 8 * 65},
		})
	} else {
		der, err = x509.MarshalPKIXPublicKey(pub)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: encode public key: %v", ErrInvalidInput, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM reads a PEM "PUBLIC KEY" block as written by
// MarshalPublicKeyPEM, including secp256k1 keys.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: no PEM PUBLIC KEY block", ErrInvalidInput)
	}
	if pub, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
		return pub, nil
	}
	var spki struct {
		Algorithm struct {
			Algorithm, Curve asn1.ObjectIdentifier
		}
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(block.Bytes, &spki); err != nil || len(rest) > 0 ||
		!spki.Algorithm.Curve.Equal(oidCurveSecp256k1) {
		return nil, fmt.Errorf("%w: unsupported or malformed public key", ErrInvalidInput)
	}
	pub, err := secp256k1.ParsePubKey(spki.PublicKey.RightAlign())
	if err != nil {
		return nil, fmt.Errorf("%w: secp256k1 public key: %v", ErrInvalidInput, err)
	}
	return pub, nil
}
