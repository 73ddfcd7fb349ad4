package hsmclient

import (
	"crypto"
	"crypto/ed25519"
	"fmt"

	"filippo.io/edwards25519"
	"github.com/miekg/pkcs11"
)

// maxMessageSize bounds data signed in one call (CloudHSM buffers hold 16 KiB).
const maxMessageSize = 16 * 1024

// parseEd25519Point checks that 32 bytes encode a point on edwards25519.
func parseEd25519Point(point []byte) (crypto.PublicKey, error) {
	if len(point) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("want a %d-byte Ed25519 point", ed25519.PublicKeySize)
	}
	if _, err := new(edwards25519.Point).SetBytes(point); err != nil {
		return nil, err
	}
	return ed25519.PublicKey(append([]byte(nil), point...)), nil
}

// ed25519Request prepares CKM_EDDSA. Ed25519 signs the message itself, so
// opts must not name a hash (crypto.Hash(0)); Ed25519ph and contexts are not offered.
func ed25519Request(message []byte, opts crypto.SignerOpts) (signRequest, error) {
	if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
		return signRequest{}, fmt.Errorf("%w: Ed25519 contexts are not supported", ErrUnsupportedMechanism)
	}
	if opts.HashFunc() != 0 {
		return signRequest{}, fmt.Errorf("%w: Ed25519 signs the message itself; pass crypto.Hash(0), not %s", ErrUnsupportedMechanism, opts.HashFunc())
	}
	if len(message) == 0 || len(message) > maxMessageSize {
		return signRequest{}, fmt.Errorf("%w: Ed25519 needs a message of 1 to %d bytes, got %d", ErrInvalidInput, maxMessageSize, len(message))
	}
	return signRequest{
		mechanism: pkcs11.NewMechanism(ckmEdDSA, nil),
		input:     message,
		finish: func(sig []byte) ([]byte, error) {
			if len(sig) != ed25519.SignatureSize {
				return nil, fmt.Errorf("token returned a %d-byte Ed25519 signature", len(sig))
			}
			return sig, nil
		},
	}, nil
}
