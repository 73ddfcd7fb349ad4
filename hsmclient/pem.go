package hsmclient

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
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
				Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1},
				Curve:     asn1.ObjectIdentifier{1, 3, 132, 0, 10},
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
