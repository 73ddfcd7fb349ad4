package hsmclient

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

func octetString(point []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddBytes(point) })
	return b.BytesOrPanic()
}

func TestParseECPointDERAndRaw(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	k1, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	p256Point, err := p256.PublicKey.Bytes()
	require.NoError(t, err)
	p384Point, err := p384.PublicKey.Bytes()
	require.NoError(t, err)

	for _, tc := range []struct {
		kt    KeyType
		point []byte
	}{
		{KeyECP256, p256Point},
		{KeyECP384, p384Point},
		{KeyECSecp256k1, k1.PubKey().SerializeUncompressed()},
		{KeyEd25519, edPub},
	} {
		t.Run(string(tc.kt), func(t *testing.T) {
			wrapped := octetString(tc.point)
			assert.Equal(t, byte(0x04), wrapped[0])
			fromDER, err := parseECPoint(tc.kt, wrapped)
			require.NoError(t, err)
			fromRaw, err := parseECPoint(tc.kt, tc.point)
			require.NoError(t, err)
			assert.Equal(t, fromDER, fromRaw)

			_, err = parseECPoint(tc.kt, tc.point[:len(tc.point)-1])
			assert.ErrorIs(t, err, ErrInvalidInput, "truncated point")
			_, err = parseECPoint(tc.kt, append(wrapped, 0))
			assert.ErrorIs(t, err, ErrInvalidInput, "trailing byte after the OCTET STRING")
		})
	}
	assert.Equal(t, &p256.PublicKey, mustParse(t, KeyECP256, octetString(p256Point)))
}

func mustParse(t *testing.T, kt KeyType, data []byte) any {
	pub, err := parseECPoint(kt, data)
	require.NoError(t, err)
	return pub
}

func TestParseECPointRejectsOffCurve(t *testing.T) {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	require.NoError(t, err)
	point := key.PublicKey().Bytes()
	point[64] ^= 1 // y no longer matches x
	_, err = parseECPoint(KeyECP256, octetString(point))
	assert.ErrorIs(t, err, ErrInvalidInput)
	_, err = parseECPoint(KeyECP256, point)
	assert.ErrorIs(t, err, ErrInvalidInput)

	k1, err := secp256k1.GeneratePrivateKey()
	require.NoError(t, err)
	bad := k1.PubKey().SerializeUncompressed()
	bad[64] ^= 1
	_, err = parseECPoint(KeyECSecp256k1, bad)
	assert.ErrorIs(t, err, ErrInvalidInput)

	notOnEdwards := make([]byte, 32)
	notOnEdwards[0] = 2 // y = 2 has no x on edwards25519
	_, err = parseECPoint(KeyEd25519, notOnEdwards)
	assert.ErrorIs(t, err, ErrInvalidInput)
}

// A raw P-256 point is 65 bytes starting 0x04, and a DER OCTET STRING of it
// starts 0x04 0x41: a point whose first coordinate byte happens to be 0x41
// must still parse, which guessing from the first bytes would get wrong.
func TestParseECPointDoesNotGuessFromPrefix(t *testing.T) {
	for range 2000 {
		key, err := ecdh.P256().GenerateKey(rand.Reader)
		require.NoError(t, err)
		point := key.PublicKey().Bytes()
		if point[1] != 0x41 {
			continue
		}
		_, err = parseECPoint(KeyECP256, point)
		require.NoError(t, err)
		return
	}
}

func FuzzParseECPoint(f *testing.F) {
	key, _ := ecdh.P256().GenerateKey(rand.Reader)
	f.Add(uint8(0), octetString(key.PublicKey().Bytes()))
	f.Add(uint8(3), make([]byte, 32))
	f.Add(uint8(2), []byte{0x04, 0x81, 0x41})
	types := []KeyType{KeyECP256, KeyECP384, KeyECSecp256k1, KeyEd25519}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		kt := types[int(which)%len(types)]
		pub, err := parseECPoint(kt, data)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidInput)
			return
		}
		require.NotNil(t, pub)
		_, err = MarshalPublicKeyPEM(pub)
		require.NoError(t, err)
	})
}
