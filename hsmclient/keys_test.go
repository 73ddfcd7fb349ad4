package hsmclient_test

import (
	"context"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
)

func TestGenerateEveryKeyTypeNonExtractable(t *testing.T) {
	client, tok := newSoftClient(t)
	ctx := context.Background()
	for _, kt := range hsmclient.KeyTypes() {
		info, err := client.GenerateKey(ctx, "k-"+string(kt), kt)
		require.NoError(t, err, kt)
		assert.Equal(t, kt, info.Type)
		assert.Len(t, info.ID, 32, "16-byte CKA_ID in hex")
		assert.Equal(t, kt != hsmclient.KeyAES256, info.Public != nil, kt)
	}

	// Inspect the private and secret objects through a separate session on
	// the same token: they must be token, private, sensitive, non-extractable.
	p, sh := inspect(t, tok)
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_SECRET_KEY} {
		require.NoError(t, p.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}))
		handles, _, err := p.FindObjects(sh, 100)
		require.NoError(t, err)
		require.NoError(t, p.FindObjectsFinal(sh))
		require.NotEmpty(t, handles)
		for _, h := range handles {
			attrs, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
			})
			require.NoError(t, err)
			assert.Equal(t, []byte{1}, attrs[0].Value, "CKA_TOKEN")
			assert.Equal(t, []byte{1}, attrs[1].Value, "CKA_PRIVATE")
			assert.Equal(t, []byte{1}, attrs[2].Value, "CKA_SENSITIVE")
			assert.Equal(t, []byte{0}, attrs[3].Value, "CKA_EXTRACTABLE")
		}
	}
}

func TestDuplicateLabelRefused(t *testing.T) {
	client, _ := newSoftClient(t)
	ctx := context.Background()
	_, err := client.GenerateKey(ctx, "dup", hsmclient.KeyECP256)
	require.NoError(t, err)
	_, err = client.GenerateKey(ctx, "dup", hsmclient.KeyAES256)
	require.ErrorIs(t, err, hsmclient.ErrKeyExists)
	keys, err := client.ListKeys(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 1, "the refused generation must not create anything")
	assert.Equal(t, hsmclient.KeyECP256, keys[0].Type)
}

func TestListKeysSurvivesUnknownKeyTypes(t *testing.T) {
	client, tok := newSoftClient(t)
	ctx := context.Background()
	_, err := client.GenerateKey(ctx, "known", hsmclient.KeyEd25519)
	require.NoError(t, err)

	// A generic secret and a P-521 key pair: types this library does not use.
	p, sh := inspect(t, tok)
	_, err = p.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "hmac-secret"),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
	})
	require.NoError(t, err)
	_, _, err = p.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "p521"),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23})},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "p521"),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true)})
	require.NoError(t, err)

	keys, err := client.ListKeys(ctx)
	require.NoError(t, err)
	byLabel := map[string]hsmclient.KeyType{}
	for _, k := range keys {
		byLabel[k.Label] = k.Type
	}
	assert.Equal(t, hsmclient.KeyEd25519, byLabel["known"])
	assert.Contains(t, string(byLabel["hmac-secret"]), "unknown")
	assert.Contains(t, string(byLabel["p521"]), "unknown")

	_, err = client.Signer(ctx, "p521")
	assert.ErrorIs(t, err, hsmclient.ErrWrongKeyType)
}

func TestDeleteKeyAndNotFound(t *testing.T) {
	client, _ := newSoftClient(t)
	ctx := context.Background()
	_, err := client.GenerateKey(ctx, "gone", hsmclient.KeyRSA2048)
	require.NoError(t, err)
	signer, err := client.Signer(ctx, "gone")
	require.NoError(t, err)
	require.NoError(t, client.DeleteKey(ctx, "gone"))

	_, err = signer.SignMessage(ctx, hsmclient.AlgRSAPSSSHA256, []byte("x"))
	require.ErrorIs(t, err, hsmclient.ErrKeyNotFound)
	require.ErrorIs(t, client.DeleteKey(ctx, "gone"), hsmclient.ErrKeyNotFound)
	_, err = client.PublicKey(ctx, "gone")
	require.ErrorIs(t, err, hsmclient.ErrKeyNotFound)
	keys, err := client.ListKeys(ctx)
	require.NoError(t, err)
	assert.Empty(t, keys)
}

func TestBadInputIsTypedAndNeverReachesTheToken(t *testing.T) {
	client, _ := newSoftClient(t)
	ctx := context.Background()
	_, err := client.GenerateKey(ctx, "", hsmclient.KeyECP256)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
	_, err = client.GenerateKey(ctx, "x", hsmclient.KeyType("dsa-1024"))
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
	_, err = client.Random(ctx, 0)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
	_, err = client.Encrypt(ctx, "none", nil, nil)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
	_, err = client.Decrypt(ctx, "none", []byte{1, 2, 3}, nil)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)

	_, err = client.GenerateKey(ctx, "ec", hsmclient.KeyECP256)
	require.NoError(t, err)
	signer, err := client.Signer(ctx, "ec")
	require.NoError(t, err)
	_, err = signer.SignContext(ctx, nil, nil)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
	_, err = signer.SignMessage(ctx, hsmclient.AlgEd25519, []byte("m"))
	assert.ErrorIs(t, err, hsmclient.ErrWrongKeyType)
	_, err = client.Encrypt(ctx, "ec", []byte("m"), nil)
	assert.ErrorIs(t, err, hsmclient.ErrWrongKeyType, "an EC key is no AES secret key")
	_, err = client.Encrypt(ctx, "missing", []byte("m"), nil)
	assert.ErrorIs(t, err, hsmclient.ErrKeyNotFound)
	_, err = client.Decrypter(ctx, "ec")
	assert.ErrorIs(t, err, hsmclient.ErrWrongKeyType)
	_, err = client.Signer(ctx, "missing")
	assert.ErrorIs(t, err, hsmclient.ErrKeyNotFound)

	random, err := client.Random(ctx, 32)
	require.NoError(t, err)
	assert.Len(t, random, 32)
}
