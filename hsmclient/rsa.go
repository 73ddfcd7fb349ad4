package hsmclient

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/miekg/pkcs11"
)

// rsaHash maps a Go hash to the PKCS#11 hash mechanism, MGF1 variant and the
// DER DigestInfo prefix PKCS#1 v1.5 signatures put before the digest.
type rsaHash struct {
	mechanism, mgf uint
	digestInfo     []byte // nil: the hash is offered for OAEP only
}

var rsaHashes = map[crypto.Hash]rsaHash{
	crypto.SHA1:   {pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, nil},
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384, []byte{0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30}},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512, []byte{0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40}},
}

func lookupRSAHash(h crypto.Hash) (rsaHash, error) {
	if h != 0 && !h.Available() {
		return rsaHash{}, fmt.Errorf("%w: RSA with hash %v", ErrUnsupportedMechanism, h)
	}
	rh, ok := rsaHashes[h]
	if !ok {
		return rsaHash{}, fmt.Errorf("%w: RSA with hash %v (want SHA-256, SHA-384 or SHA-512)", ErrUnsupportedMechanism, h)
	}
	return rh, nil
}

func parseRSAPublicKey(modulus, exponent []byte) (*rsa.PublicKey, error) {
	e := new(big.Int).SetBytes(exponent)
	if len(modulus) == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, fmt.Errorf("%w: malformed RSA public key", ErrInvalidInput)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(modulus), E: int(e.Int64())}, nil
}

// rsaRequest prepares an RSA signature over a digest: RSASSA-PSS when opts is
// *rsa.PSSOptions, PKCS#1 v1.5 otherwise.
//
// PSS salt length: rsa.PSSSaltLengthEqualsHash uses the hash length (what JWS
// PS256 requires); rsa.PSSSaltLengthAuto uses the largest salt the key allows,
// as Go's rsa.SignPSS does; a positive value is used as given.
func rsaRequest(key KeyInfo, digest []byte, opts crypto.SignerOpts) (signRequest, error) {
	h := opts.HashFunc()
	rh, err := lookupRSAHash(h)
	if err != nil {
		return signRequest{}, err
	}
	if rh.digestInfo == nil {
		return signRequest{}, fmt.Errorf("%w: RSA signatures with %v", ErrUnsupportedMechanism, h)
	}
	if len(digest) != h.Size() {
		return signRequest{}, fmt.Errorf("%w: digest is %d bytes, %s needs %d", ErrInvalidInput, len(digest), h, h.Size())
	}
	pub := key.Public.(*rsa.PublicKey)
	pss, ok := opts.(*rsa.PSSOptions)
	if !ok {
		return signRequest{
			mechanism: pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil),
			input:     append(append([]byte{}, rh.digestInfo...), digest...),
			finish:    identity,
		}, nil
	}
	maxSalt := (pub.N.BitLen()-1+7)/8 - 2 - h.Size()
	salt := pss.SaltLength
	switch {
	case salt == rsa.PSSSaltLengthEqualsHash:
		salt = h.Size()
	case salt == rsa.PSSSaltLengthAuto:
		salt = maxSalt
	case salt < 0 || salt > maxSalt:
		return signRequest{}, fmt.Errorf("%w: PSS salt length %d (this key allows 0 to %d)", ErrInvalidInput, pss.SaltLength, maxSalt)
	}
	return signRequest{
		mechanism: pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(rh.mechanism, rh.mgf, uint(salt))),
		input:     digest,
		finish:    identity,
	}, nil
}

func identity(sig []byte) ([]byte, error) { return sig, nil }

// Decrypter decrypts RSA-OAEP ciphertext with a private key held in the HSM.
type Decrypter struct {
	client *Client
	key    KeyInfo
}

// Decrypter returns a crypto.Decrypter for an RSA key pair.
func (c *Client) Decrypter(ctx context.Context, label string) (*Decrypter, error) {
	key, err := c.KeyInfo(ctx, label)
	if err != nil {
		return nil, err
	}
	if _, ok := key.Public.(*rsa.PublicKey); !ok {
		return nil, &OpError{Op: "decrypter", Err: fmt.Errorf("%w: %q is %s; RSA-OAEP needs an RSA key", ErrWrongKeyType, label, key.Type)}
	}
	return &Decrypter{client: c, key: key}, nil
}

// Public returns the RSA public key.
func (d *Decrypter) Public() crypto.PublicKey { return d.key.Public }

// Decrypt implements crypto.Decrypter with RSA-OAEP. opts is *rsa.OAEPOptions
// (nil means SHA-256 with MGF1-SHA-256 and no label); SHA-1, SHA-256, SHA-384
// and SHA-512 are offered, with the same hash for MGF1. Which ones work
// depends on the token: SoftHSM 2.6 accepts only SHA-1 and no label.
// The random source is unused.
func (d *Decrypter) Decrypt(_ io.Reader, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return d.DecryptContext(context.Background(), ciphertext, opts)
}

// DecryptContext is Decrypt with a context.
func (d *Decrypter) DecryptContext(ctx context.Context, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if d == nil || d.client == nil || d.key.Public == nil {
		return nil, &OpError{Op: "decrypt", Err: fmt.Errorf("%w: a Decrypter must come from Client.Decrypter", ErrInvalidInput)}
	}
	oaep := &rsa.OAEPOptions{Hash: crypto.SHA256}
	switch o := opts.(type) {
	case nil:
	case *rsa.OAEPOptions:
		oaep = o
	default:
		return nil, &OpError{Op: "decrypt", Err: fmt.Errorf("%w: only RSA-OAEP decryption is offered (got %T)", ErrUnsupportedMechanism, opts)}
	}
	mgfHash := oaep.MGFHash
	if mgfHash == 0 {
		mgfHash = oaep.Hash
	}
	rh, err := lookupRSAHash(oaep.Hash)
	if err == nil && mgfHash != oaep.Hash {
		err = fmt.Errorf("%w: OAEP with a different MGF1 hash", ErrUnsupportedMechanism)
	}
	if err == nil && (len(ciphertext) == 0 || len(ciphertext) > (d.key.Public.(*rsa.PublicKey).N.BitLen()+7)/8) {
		err = fmt.Errorf("%w: RSA ciphertext of %d bytes", ErrInvalidInput, len(ciphertext))
	}
	if err != nil {
		return nil, &OpError{Op: "decrypt", Err: err}
	}
	params := pkcs11.NewOAEPParams(rh.mechanism, rh.mgf, pkcs11.CKZ_DATA_SPECIFIED, oaep.Label)
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, params)}
	pt, err := run(ctx, d.client, operation[[]byte]{name: "decrypt", failover: true, run: func(cl *cluster, s *session) ([]byte, error) {
		return withKey(cl, s, d.key.Label, d.key.ID, pkcs11.CKO_PRIVATE_KEY, func(h pkcs11.ObjectHandle) ([]byte, error) {
			if err := s.ctx.DecryptInit(s.h, mech, h); err != nil {
				return nil, fmt.Errorf("decrypt init: %w", err)
			}
			pt, err := s.ctx.Decrypt(s.h, ciphertext)
			if isAuthFailure(err) {
				return nil, fmt.Errorf("%w: RSA-OAEP ciphertext rejected (%w)", ErrInvalidInput, err)
			}
			return pt, wrapf(err, "decrypt")
		})
	}})
	if errors.Is(err, ErrKeyNotFound) {
		d.client.forgetPublic(d.key.Label)
	}
	return pt, err
}
