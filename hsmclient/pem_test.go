package hsmclient_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
)

func TestPublicKeyPEMRoundTrip(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	k1, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	for _, pub := range []any{&p256.PublicKey, k1.PubKey(), ed, &rsaKey.PublicKey} {
		pemBytes, err := hsmclient.MarshalPublicKeyPEM(pub)
		require.NoError(t, err)
		back, err := hsmclient.ParsePublicKeyPEM(pemBytes)
		require.NoError(t, err)
		assert.Equal(t, pub, back)
	}
	_, err = hsmclient.ParsePublicKeyPEM([]byte("not pem"))
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
}
