package hsmclient_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
)

func TestAESGCMRoundTripAndTamper(t *testing.T) {
	client, _ := newSoftClient(t)
	ctx := context.Background()
	_, err := client.GenerateKey(ctx, "wallet-data", hsmclient.KeyAES256)
	require.NoError(t, err)
	plaintext := []byte("holder's credential store")
	aad := []byte("holder:did:example:42")

	sealed, err := client.Encrypt(ctx, "wallet-data", plaintext, aad)
	require.NoError(t, err)
	require.Len(t, sealed, hsmclient.GCMNonceSize+len(plaintext)+hsmclient.GCMTagSize)
	again, err := client.Encrypt(ctx, "wallet-data", plaintext, aad)
	require.NoError(t, err)
	assert.NotEqual(t, sealed[:hsmclient.GCMNonceSize], again[:hsmclient.GCMNonceSize], "every call gets a fresh nonce")
	assert.False(t, bytes.Contains(sealed, plaintext))

	opened, err := client.Decrypt(ctx, "wallet-data", sealed, aad)
	require.NoError(t, err)
	assert.Equal(t, plaintext, opened)

	for i := range []int{0, hsmclient.GCMNonceSize, len(sealed) - 1} {
		tampered := bytes.Clone(sealed)
		tampered[[]int{0, hsmclient.GCMNonceSize, len(sealed) - 1}[i]] ^= 0x01
		_, err := client.Decrypt(ctx, "wallet-data", tampered, aad)
		require.ErrorIs(t, err, hsmclient.ErrAuthenticationFailed)
	}
	_, err = client.Decrypt(ctx, "wallet-data", sealed, []byte("other holder"))
	require.ErrorIs(t, err, hsmclient.ErrAuthenticationFailed)

	noAAD, err := client.Encrypt(ctx, "wallet-data", plaintext, nil)
	require.NoError(t, err)
	opened, err = client.Decrypt(ctx, "wallet-data", noAAD, nil)
	require.NoError(t, err)
	assert.Equal(t, plaintext, opened)

	big := make([]byte, hsmclient.MaxGCMPlaintext)
	sealedBig, err := client.Encrypt(ctx, "wallet-data", big, nil)
	require.NoError(t, err)
	opened, err = client.Decrypt(ctx, "wallet-data", sealedBig, nil)
	require.NoError(t, err)
	assert.Equal(t, big, opened)
	_, err = client.Encrypt(ctx, "wallet-data", make([]byte, hsmclient.MaxGCMPlaintext+1), nil)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)

	// The client stays healthy after authentication failures.
	assert.Equal(t, "ok", client.Health(ctx).Status)
}
