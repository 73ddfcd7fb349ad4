package hsmclient_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
)

func TestECDSASignVerifiedByGoAndOpenSSL(t *testing.T) {
	client, _ := newSoftClient(t)
	ctx := context.Background()
	for _, tc := range []struct {
		kt   hsmclient.KeyType
		alg  hsmclient.Algorithm
		hash string
	}{
		{hsmclient.KeyECP256, hsmclient.AlgECDSASHA256, "sha256"},
		{hsmclient.KeyECP384, hsmclient.AlgECDSASHA384, "sha384"},
		{hsmclient.KeyECSecp256k1, hsmclient.AlgECDSASHA256, "sha256"},
	} {
		t.Run(string(tc.kt), func(t *testing.T) {
			signer := generateSigner(t, client, "ec-"+string(tc.kt), tc.kt)
			msg := []byte(`{"@context":["https://www.w3.org/2018/credentials/v1"],"type":["VerifiableCredential"]}`)
			for range 20 { // several signatures, so r or s with the high bit set occur
				sig, err := signer.SignMessage(ctx, tc.alg, msg)
				require.NoError(t, err)
				require.NoError(t, hsmclient.VerifyMessage(signer.Public(), tc.alg, msg, sig))
				tampered := append([]byte{}, msg...)
				tampered[0] ^= 1
				require.ErrorIs(t, hsmclient.VerifyMessage(signer.Public(), tc.alg, tampered, sig), hsmclient.ErrSignatureInvalid)
			}
			sig, err := signer.SignMessage(ctx, tc.alg, msg)
			require.NoError(t, err)
			opensslDigestVerify(t, signer.Public(), tc.hash, msg, sig)
		})
	}
}

func TestECDSASignerIsACryptoSigner(t *testing.T) {
	client, _ := newSoftClient(t)
	var signer crypto.Signer = generateSigner(t, client, "p256", hsmclient.KeyECP256)
	digest := sha256.Sum256([]byte("did:example:123"))
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	require.NoError(t, err)
	assert.True(t, ecdsa.VerifyASN1(signer.Public().(*ecdsa.PublicKey), digest[:], sig))

	_, err = signer.Sign(rand.Reader, digest[:20], crypto.SHA256)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput, "digest length must match the hash")
}

func TestECDSARawASN1Conversion(t *testing.T) {
	der := func(r, s *big.Int) []byte {
		b, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
		require.NoError(t, err)
		return b
	}
	high := new(big.Int).Lsh(big.NewInt(1), 255) // 0x80 00..00: needs a leading zero in DER
	high.Add(high, big.NewInt(12345))
	short := big.NewInt(7) // a 1-byte value: must be left-padded in raw form
	for _, tc := range []struct {
		name string
		r, s *big.Int
	}{
		{"high bit r", high, short},
		{"high bit s", short, high},
		{"both short", short, big.NewInt(0x80)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := der(tc.r, tc.s)
			raw, err := hsmclient.ECDSAASN1ToRaw(want, 32)
			require.NoError(t, err)
			require.Len(t, raw, 64)
			assert.Equal(t, tc.r.FillBytes(make([]byte, 32)), raw[:32])
			assert.Equal(t, tc.s.FillBytes(make([]byte, 32)), raw[32:])
			back, err := hsmclient.ECDSARawToASN1(raw)
			require.NoError(t, err)
			assert.Equal(t, want, back, "DER must be minimal and identical to encoding/asn1's")
		})
	}

	// Real signatures: Go signs, convert to raw and back, Go verifies.
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	digest := make([]byte, 48)
	for range 50 {
		sig, err := ecdsa.SignASN1(rand.Reader, key, digest)
		require.NoError(t, err)
		raw, err := hsmclient.ECDSAASN1ToRaw(sig, 48)
		require.NoError(t, err)
		back, err := hsmclient.ECDSARawToASN1(raw)
		require.NoError(t, err)
		assert.True(t, ecdsa.VerifyASN1(&key.PublicKey, digest, back))
	}

	for _, bad := range [][]byte{nil, {0x30, 0x00}, {0x30, 0x03, 0x02, 0x01, 0x00}, der(high, high)[:10], append(der(short, short), 0)} {
		_, err := hsmclient.ECDSAASN1ToRaw(bad, 32)
		assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
	}
	_, err = hsmclient.ECDSAASN1ToRaw(der(new(big.Int).Lsh(big.NewInt(1), 256), short), 32)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput, "r wider than the field")
	_, err = hsmclient.ECDSARawToASN1(make([]byte, 63))
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
}

func FuzzECDSASignatureConversion(f *testing.F) {
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02}, 32)
	f.Add(make([]byte, 64), 32)
	f.Fuzz(func(t *testing.T, data []byte, size int) {
		if raw, err := hsmclient.ECDSAASN1ToRaw(data, size); err == nil {
			require.Len(t, raw, 2*size)
			der, err := hsmclient.ECDSARawToASN1(raw)
			require.NoError(t, err)
			again, err := hsmclient.ECDSAASN1ToRaw(der, size)
			require.NoError(t, err)
			require.Equal(t, raw, again)
		}
		if der, err := hsmclient.ECDSARawToASN1(data); err == nil {
			raw, err := hsmclient.ECDSAASN1ToRaw(der, len(data)/2)
			if err == nil {
				require.Equal(t, data, raw)
			}
		}
	})
}
