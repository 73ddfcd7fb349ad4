package hsmclient_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
)

func TestEd25519SignVerifiedByGoAndOpenSSL(t *testing.T) {
	client, _ := newSoftClient(t)
	signer := generateSigner(t, client, "did-key", hsmclient.KeyEd25519)
	msg := []byte("did:key:z6Mk... signs this credential")

	sig, err := signer.Sign(rand.Reader, msg, crypto.Hash(0))
	require.NoError(t, err)
	require.Len(t, sig, ed25519.SignatureSize)
	assert.True(t, ed25519.Verify(signer.Public().(ed25519.PublicKey), msg, sig))
	require.NoError(t, hsmclient.VerifyMessage(signer.Public(), hsmclient.AlgEd25519, msg, sig))
	opensslVerify(t, signer.Public(), msg, sig, "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg", "-sigfile", "sig")

	_, err = signer.Sign(rand.Reader, msg, crypto.SHA512)
	assert.ErrorIs(t, err, hsmclient.ErrUnsupportedMechanism, "Ed25519ph is not offered")
	_, err = signer.Sign(rand.Reader, msg, &ed25519.Options{Context: "ctx"})
	assert.ErrorIs(t, err, hsmclient.ErrUnsupportedMechanism)
	_, err = signer.SignMessage(context.Background(), hsmclient.AlgEd25519, nil)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
	_, err = signer.SignMessage(context.Background(), hsmclient.AlgEd25519, make([]byte, 16*1024+1))
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
}
