package hsmclient

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"

	"github.com/miekg/pkcs11"
)

// signRequest is one signature, prepared for the token: the mechanism, the
// bytes to sign, and the conversion of the token's answer to Go's format.
type signRequest struct {
	mechanism *pkcs11.Mechanism
	input     []byte
	finish    func([]byte) ([]byte, error)
}

// Signer is a crypto.Signer whose private key never leaves the HSM. It holds
// the key's label, not a handle, so it survives failover and reconnects.
type Signer struct {
	client *Client
	key    KeyInfo
}

// Signer returns a crypto.Signer for an asymmetric key.
func (c *Client) Signer(ctx context.Context, label string) (*Signer, error) {
	key, err := c.KeyInfo(ctx, label)
	if err != nil {
		return nil, err
	}
	if key.Public == nil {
		return nil, &OpError{Op: "signer", Err: fmt.Errorf("%w: %q is %s, not a signing key pair", ErrWrongKeyType, label, key.Type)}
	}
	return &Signer{client: c, key: key}, nil
}

// Public returns the public key.
func (s *Signer) Public() crypto.PublicKey { return s.key.Public }

// Key describes the signing key.
func (s *Signer) Key() KeyInfo { return s.key }

// Sign implements crypto.Signer. ECDSA keys sign a digest and return ASN.1
// DER; Ed25519 keys sign the message itself (opts.HashFunc() must be 0); RSA
// keys use PSS when opts is *rsa.PSSOptions and PKCS#1 v1.5 otherwise. The
// random source is unused: the HSM supplies its own randomness.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(context.Background(), digest, opts)
}

// SignContext is Sign with a context that bounds waiting and failover.
func (s *Signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s == nil || s.client == nil || s.key.Public == nil {
		return nil, &OpError{Op: "sign", Err: fmt.Errorf("%w: a Signer must come from Client.Signer", ErrInvalidInput)}
	}
	if opts == nil {
		opts = crypto.Hash(0)
	}
	if h := opts.HashFunc(); h != 0 && !h.Available() {
		return nil, &OpError{Op: "sign", Err: fmt.Errorf("%w: hash %v", ErrUnsupportedMechanism, h)}
	}
	var req signRequest
	var err error
	switch s.key.Type {
	case KeyECP256, KeyECP384, KeyECSecp256k1:
		req, err = ecdsaRequest(s.key, digest, opts)
	case KeyEd25519:
		req, err = ed25519Request(digest, opts)
	default:
		req, err = rsaRequest(s.key, digest, opts)
	}
	if err != nil {
		return nil, &OpError{Op: "sign", Err: err}
	}
	mech := []*pkcs11.Mechanism{req.mechanism}
	raw, err := run(ctx, s.client, operation[[]byte]{name: "sign", failover: true, run: func(cl *cluster, sess *session) ([]byte, error) {
		return withKey(cl, sess, s.key.Label, s.key.ID, pkcs11.CKO_PRIVATE_KEY, func(h pkcs11.ObjectHandle) ([]byte, error) {
			if err := sess.ctx.SignInit(sess.h, mech, h); err != nil {
				return nil, fmt.Errorf("sign init: %w", err)
			}
			sig, err := sess.ctx.Sign(sess.h, req.input)
			return sig, wrapf(err, "sign")
		})
	}})
	if errors.Is(err, ErrKeyNotFound) {
		s.client.forgetPublic(s.key.Label) // replaced or deleted: a new Signer must read it again
	}
	if err != nil {
		return nil, err
	}
	sig, err := req.finish(raw)
	if err != nil {
		return nil, &OpError{Op: "sign", Err: err}
	}
	return sig, nil
}
