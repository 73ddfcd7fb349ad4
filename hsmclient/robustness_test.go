package hsmclient_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
)

func TestConcurrentGenerationTakesALabelOnce(t *testing.T) {
	client, _ := newSoftClient(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, exists int
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := client.GenerateKey(ctx, "race", hsmclient.KeyECP256)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, hsmclient.ErrKeyExists):
				exists++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, ok)
	assert.Equal(t, 7, exists)
	keys, err := client.ListKeys(ctx)
	require.NoError(t, err)
	assert.Len(t, keys, 1)
}

func TestDuplicateLabelsAreRefusedNotGuessed(t *testing.T) {
	client, tok := newSoftClient(t)
	ctx := context.Background()
	_, err := client.GenerateKey(ctx, "twin", hsmclient.KeyECP256)
	require.NoError(t, err)
	signer, err := client.Signer(ctx, "twin")
	require.NoError(t, err)
	// Another tool adds a second key pair with the same label and ID-less lookups become ambiguous.
	p, sh := inspect(t, tok)
	_, _, err = p.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "twin"),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "twin"),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true)})
	require.NoError(t, err)

	// The existing Signer is bound to its key's CKA_ID and still signs with the right key.
	sig, err := signer.SignMessage(ctx, hsmclient.AlgECDSASHA256, []byte("m"))
	require.NoError(t, err)
	require.NoError(t, hsmclient.VerifyMessage(signer.Public(), hsmclient.AlgECDSASHA256, []byte("m"), sig))
	// Lookups by label alone refuse to pick one.
	_, err = client.Encrypt(ctx, "twin", []byte("m"), nil)
	require.Error(t, err)
}

func TestReplacedKeyIsNotSignedWithByAnOldSigner(t *testing.T) {
	client, _ := newSoftClient(t)
	ctx := context.Background()
	_, err := client.GenerateKey(ctx, "rotating", hsmclient.KeyEd25519)
	require.NoError(t, err)
	old, err := client.Signer(ctx, "rotating")
	require.NoError(t, err)
	require.NoError(t, client.DeleteKey(ctx, "rotating"))
	_, err = client.GenerateKey(ctx, "rotating", hsmclient.KeyEd25519)
	require.NoError(t, err)

	_, err = old.SignMessage(ctx, hsmclient.AlgEd25519, []byte("m"))
	require.ErrorIs(t, err, hsmclient.ErrKeyNotFound, "the old Signer's key is gone; it must not sign with the new one")
	fresh, err := client.Signer(ctx, "rotating")
	require.NoError(t, err)
	sig, err := fresh.SignMessage(ctx, hsmclient.AlgEd25519, []byte("m"))
	require.NoError(t, err)
	require.NoError(t, hsmclient.VerifyMessage(fresh.Public(), hsmclient.AlgEd25519, []byte("m"), sig))
}

func TestDeleteKeyLeavesOtherObjectsAlone(t *testing.T) {
	client, tok := newSoftClient(t)
	p, sh := inspect(t, tok)
	_, err := p.CreateObject(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "backup-blob"), pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte("precious")),
	})
	require.NoError(t, err)
	require.ErrorIs(t, client.DeleteKey(context.Background(), "backup-blob"), hsmclient.ErrKeyNotFound)
	require.NoError(t, p.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "backup-blob")}))
	handles, _, err := p.FindObjects(sh, 10)
	require.NoError(t, err)
	require.NoError(t, p.FindObjectsFinal(sh))
	assert.Len(t, handles, 1, "the data object survives")
}

func TestHostileInputNeverPanics(t *testing.T) {
	client, _ := newSoftClient(t)
	ctx := context.Background()
	for _, label := range []string{"a\nb", "evil\x1b[2J", " ", "nul\x00label", strings.Repeat("x", 10000)} {
		_, err := client.GenerateKey(ctx, label, hsmclient.KeyAES256)
		assert.ErrorIs(t, err, hsmclient.ErrInvalidInput, "%q", label)
		_, err = client.Encrypt(ctx, label, []byte("m"), nil)
		assert.ErrorIs(t, err, hsmclient.ErrInvalidInput, "%q", label)
	}
	signer := generateSigner(t, client, "ec", hsmclient.KeyECP256)
	_, err := signer.Sign(rand.Reader, make([]byte, 16), crypto.Hash(999))
	assert.ErrorIs(t, err, hsmclient.ErrUnsupportedMechanism)
	rsaSigner := generateSigner(t, client, "rsa", hsmclient.KeyRSA2048)
	_, err = rsaSigner.Sign(rand.Reader, make([]byte, 32), crypto.Hash(999))
	assert.ErrorIs(t, err, hsmclient.ErrUnsupportedMechanism)
	_, err = (&hsmclient.Signer{}).Sign(rand.Reader, make([]byte, 32), crypto.SHA256)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)
	_, err = (&hsmclient.Decrypter{}).Decrypt(rand.Reader, make([]byte, 32), nil)
	assert.ErrorIs(t, err, hsmclient.ErrInvalidInput)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = client.Random(cancelled, 8)
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, hsmclient.ErrPoolExhausted, "an idle pool was not exhausted")

	require.NoError(t, client.Close())
	assert.Equal(t, "unavailable", client.Health(ctx).Status, "a closed client is not ready")
}

func TestShortDeadlinesDoNotTakeAHealthyClusterDown(t *testing.T) {
	cfg, _, _ := faultClusters(t, seedKey("rsa", hsmclient.KeyRSA2048))
	client := openClient(t, cfg)
	signer, err := client.Signer(context.Background(), "rsa")
	require.NoError(t, err)
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Microsecond)
		_, err := signer.SignMessage(ctx, hsmclient.AlgRSAPSSSHA256, []byte("m"))
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorIs(t, err, hsmclient.ErrTimeout)
		}
	}
	assert.Equal(t, hsmclient.StateUp, client.Stats()[0].State, "the caller's impatience is not the primary's fault")
}

func TestPINAndConfigFilesAreReadSafely(t *testing.T) {
	tok := mustToken(t)
	ctx := context.Background()
	fifo := filepath.Join(t.TempDir(), "pin.fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	for _, pinFile := range []string{fifo, "/dev/zero", t.TempDir()} {
		cc := softCluster(t, "primary", tok)
		cc.PINFile = pinFile
		_, err := hsmclient.Open(ctx, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{cc}})
		require.ErrorIs(t, err, hsmclient.ErrInvalidConfig, pinFile)
	}
	big := filepath.Join(t.TempDir(), "big.pin")
	require.NoError(t, os.WriteFile(big, make([]byte, 1<<20), 0o600))
	cc := softCluster(t, "primary", tok)
	cc.PINFile = big
	_, err := hsmclient.Open(ctx, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{cc}})
	require.ErrorIs(t, err, hsmclient.ErrInvalidConfig)

	_, err = hsmclient.LoadConfig("/dev/zero")
	require.ErrorIs(t, err, hsmclient.ErrInvalidConfig)

	inline := softCluster(t, "primary", tok)
	inline.PINFile, inline.PINEnv = "", "user:S3cretPassw0rd"
	_, err = hsmclient.Open(ctx, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{inline}})
	require.ErrorIs(t, err, hsmclient.ErrInvalidConfig)
	assert.NotContains(t, err.Error(), "S3cret")
}
