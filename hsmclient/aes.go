package hsmclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// AES-256-GCM sizes. Sealed data is nonce | ciphertext | tag.
const (
	GCMNonceSize = 12
	GCMTagSize   = 16
	// MaxGCMPlaintext is the largest plaintext sealed in one call (CloudHSM's 16 KiB buffer limit).
	MaxGCMPlaintext = 16 * 1024
)

// Encrypt seals plaintext with the AES-256 key under label using AES-GCM.
// The result is nonce (12 bytes) | ciphertext | tag (16 bytes). The nonce
// comes from the HSM: it is drawn from the HSM's generator and read back
// after the call, since CloudHSM writes its own IV into the parameters.
// additionalData is authenticated but not encrypted; it may be nil.
func (c *Client) Encrypt(ctx context.Context, label string, plaintext, additionalData []byte) ([]byte, error) {
	if err := checkLabel(label); err != nil {
		return nil, &OpError{Op: "encrypt", Err: err}
	}
	if len(plaintext) == 0 || len(plaintext) > MaxGCMPlaintext {
		return nil, &OpError{Op: "encrypt", Err: fmt.Errorf("%w: plaintext must be 1 to %d bytes, got %d", ErrInvalidInput, MaxGCMPlaintext, len(plaintext))}
	}
	return run(ctx, c, operation[[]byte]{name: "encrypt", failover: true, run: func(cl *cluster, s *session) ([]byte, error) {
		return withKey(cl, s, label, "", pkcs11.CKO_SECRET_KEY, func(h pkcs11.ObjectHandle) ([]byte, error) {
			iv, err := s.ctx.GenerateRandom(s.h, GCMNonceSize)
			if err != nil {
				return nil, fmt.Errorf("generate nonce: %w", err)
			}
			params := pkcs11.NewGCMParams(iv, additionalData, GCMTagSize*8)
			defer params.Free()
			if err := s.ctx.EncryptInit(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
				return nil, fmt.Errorf("encrypt init: %w", err)
			}
			ct, err := s.ctx.Encrypt(s.h, plaintext)
			if err != nil {
				return nil, fmt.Errorf("encrypt: %w", err)
			}
			nonce := params.IV()
			if len(nonce) != GCMNonceSize || len(ct) != len(plaintext)+GCMTagSize {
				return nil, fmt.Errorf("token returned a %d-byte nonce and %d-byte ciphertext", len(nonce), len(ct))
			}
			return append(nonce, ct...), nil
		})
	}})
}

// Decrypt opens data sealed by Encrypt. Any authentication failure (wrong key,
// tampered data, wrong additional data) is reported as ErrAuthenticationFailed
// and nothing else, so callers cannot tell which part was wrong.
func (c *Client) Decrypt(ctx context.Context, label string, sealed, additionalData []byte) ([]byte, error) {
	if err := checkLabel(label); err != nil {
		return nil, &OpError{Op: "decrypt", Err: err}
	}
	if len(sealed) < GCMNonceSize+GCMTagSize+1 || len(sealed) > GCMNonceSize+MaxGCMPlaintext+GCMTagSize {
		return nil, &OpError{Op: "decrypt", Err: fmt.Errorf("%w: sealed data must be %d to %d bytes, got %d", ErrInvalidInput, GCMNonceSize+GCMTagSize+1, GCMNonceSize+MaxGCMPlaintext+GCMTagSize, len(sealed))}
	}
	nonce, ct := sealed[:GCMNonceSize], sealed[GCMNonceSize:]
	return run(ctx, c, operation[[]byte]{name: "decrypt", failover: true, run: func(cl *cluster, s *session) ([]byte, error) {
		return withKey(cl, s, label, "", pkcs11.CKO_SECRET_KEY, func(h pkcs11.ObjectHandle) ([]byte, error) {
			params := pkcs11.NewGCMParams(nonce, additionalData, GCMTagSize*8)
			defer params.Free()
			if err := s.ctx.DecryptInit(s.h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, h); err != nil {
				return nil, fmt.Errorf("decrypt init: %w", err)
			}
			pt, err := s.ctx.Decrypt(s.h, ct)
			if isAuthFailure(err) {
				return nil, ErrAuthenticationFailed
			}
			return pt, wrapf(err, "decrypt")
		})
	}})
}

// isAuthFailure recognises a GCM tag mismatch, which tokens report in
// different ways (SoftHSM: CKR_GENERAL_ERROR).
func isAuthFailure(err error) bool {
	code, ok := pkcs11Code(err)
	if !ok {
		return false
	}
	return code == pkcs11.CKR_ENCRYPTED_DATA_INVALID || code == pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE ||
		code == pkcs11.CKR_GENERAL_ERROR || errors.Is(err, pkcs11.Error(pkcs11.CKR_SIGNATURE_INVALID))
}
