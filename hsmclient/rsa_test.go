package hsmclient_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
)

func TestRSASignaturesEveryKeySize(t *testing.T) {
	client, _ := newSoftClient(t)
	ctx := context.Background()
	msg := []byte("verifiable presentation")
	for _, kt := range []hsmclient.KeyType{hsmclient.KeyRSA2048, hsmclient.KeyRSA3072, hsmclient.KeyRSA4096} {
		t.Run(string(kt), func(t *testing.T) {
			signer := generateSigner(t, client, string(kt), kt)
			pub := signer.Public().(*rsa.PublicKey)
			for _, alg := range []hsmclient.Algorithm{hsmclient.AlgRSAPSSSHA256, hsmclient.AlgRSAPKCS1SHA256} {
				sig, err := signer.SignMessage(ctx, alg, msg)
				require.NoError(t, err)
				require.Len(t, sig, pub.Size())
				require.NoError(t, hsmclient.VerifyMessage(pub, alg, msg, sig))
				require.ErrorIs(t, hsmclient.VerifyMessage(pub, alg, append(msg, '!'), sig), hsmclient.ErrSignatureInvalid)
			}
			sig, err := signer.SignMessage(ctx, hsmclient.AlgRSAPSSSHA256, msg)
			require.NoError(t, err)
			opensslDigestVerify(t, pub, "sha256", msg, sig, "rsa_padding_mode:pss", "rsa_pss_saltlen:32")
			sig, err = signer.SignMessage(ctx, hsmclient.AlgRSAPKCS1SHA256, msg)
			require.NoError(t, err)
			opensslDigestVerify(t, pub, "sha256", msg, sig)
		})
	}
}

func TestRSAPSSSaltRules(t *testing.T) {
	client, _ := newSoftClient(t)
	signer := generateSigner(t, client, "pss", hsmclient.KeyRSA2048)
	pub := signer.Public().(*rsa.PublicKey)
	msg := []byte("salt")
	digest := sha256.Sum256(msg)
	maxSalt := (pub.N.BitLen()-1+7)/8 - 2 - sha256.Size

	for _, tc := range []struct {
		name     string
		salt     int
		wantSalt int
	}{
		{"equals hash", rsa.PSSSaltLengthEqualsHash, sha256.Size},
		{"auto uses the largest salt", rsa.PSSSaltLengthAuto, maxSalt},
		{"explicit", 20, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := signer.Sign(rand.Reader, digest[:], &rsa.PSSOptions{SaltLength: tc.salt, Hash: crypto.SHA256})
			require.NoError(t, err)
			// Verification with the exact salt length proves which salt was used.
			require.NoError(t, rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: tc.wantSalt}))
			require.NoError(t, rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}))
		})
	}
	_, err := signer.Sign(rand.Reader, digest[:], &rsa.PSSOptions{SaltLength: maxSalt + 1, Hash: crypto.SHA256})
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
	_, err = signer.Sign(rand.Reader, digest[:], crypto.SHA1)
	assert.ErrorIs(t, err, hsmclient.ErrUnsupportedMechanism)
}

func TestRSAOAEPDecrypt(t *testing.T) {
	client, _ := newSoftClient(t)
	ctx := context.Background()
	_, err := client.GenerateKey(ctx, "oaep", hsmclient.KeyRSA2048)
	require.NoError(t, err)
	var dec crypto.Decrypter
	dec, err = client.Decrypter(ctx, "oaep")
	require.NoError(t, err)
	pub := dec.Public().(*rsa.PublicKey)

	// SoftHSM 2.6 implements OAEP with SHA-1 only (CloudHSM also offers SHA-256).
	secret := []byte("wrapped credential key")
	sha1OAEP := &rsa.OAEPOptions{Hash: crypto.SHA1}
	ct, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, secret, nil)
	require.NoError(t, err)
	pt, err := dec.Decrypt(rand.Reader, ct, sha1OAEP)
	require.NoError(t, err)
	assert.Equal(t, secret, pt)
	_, err = dec.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA1})
	assert.ErrorIs(t, err, hsmclient.ErrUnsupportedMechanism)
	_, err = dec.Decrypt(rand.Reader, ct, nil)
	assert.ErrorIs(t, err, hsmclient.ErrUnsupportedMechanism, "SoftHSM refuses OAEP with SHA-256")

	_, err = dec.Decrypt(rand.Reader, nil, nil)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
	_, err = dec.Decrypt(rand.Reader, ct, &rsa.PKCS1v15DecryptOptions{})
	assert.ErrorIs(t, err, hsmclient.ErrUnsupportedMechanism)
	ct[10] ^= 1
	_, err = dec.Decrypt(rand.Reader, ct, sha1OAEP)
	assert.Error(t, err)
	pt, err = dec.Decrypt(rand.Reader, mustOAEP(t, pub, secret), sha1OAEP)
	require.NoError(t, err, "the decrypter still works after a failed decryption")
	assert.Equal(t, secret, pt)
}

func mustOAEP(t *testing.T, pub *rsa.PublicKey, msg []byte) []byte {
	ct, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, msg, nil)
	require.NoError(t, err)
	return ct
}
