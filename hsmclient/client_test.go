package hsmclient_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
	"github.com/personapass/hsm/internal/testhsm"
)

func TestConcurrentSigningStaysWithinSessionLimit(t *testing.T) {
	tok := testhsm.NewToken(t, "load")
	cc, shim := faultCluster(t, "primary", tok, 0)
	const maxSessions = 8
	client := openClient(t, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{cc}, Pool: hsmclient.PoolConfig{MaxSessions: maxSessions}})
	signer := generateSigner(t, client, "issuer", hsmclient.KeyECP256)

	const goroutines, perGoroutine = 64, 500
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte{byte(g), 'v', 'c'}
			for range perGoroutine {
				sig, err := signer.SignMessage(context.Background(), hsmclient.AlgECDSASHA256, msg)
				if err == nil {
					err = hsmclient.VerifyMessage(signer.Public(), hsmclient.AlgECDSASHA256, msg, sig)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	seen := counters(t, shim)
	assert.LessOrEqual(t, seen.Peak, maxSessions, "sessions open at the token, login anchor included")
	assert.Equal(t, 1, seen.Logins, "one login for the whole run")
	stats := client.Stats()[0]
	assert.Equal(t, maxSessions-1, stats.MaxOpen)
	assert.Positive(t, stats.WaitCount, "64 callers on 7 sessions must have waited")
	assert.Zero(t, stats.InUse)
}

func TestPoolExhaustionReturnsContextError(t *testing.T) {
	tok := testhsm.NewToken(t, "exhaust")
	cc, shim := faultCluster(t, "primary", tok, 0)
	client := openClient(t, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{cc}, Pool: hsmclient.PoolConfig{MaxSessions: 2}})
	signer := generateSigner(t, client, "k", hsmclient.KeyECP256)

	require.NoError(t, shim.SetMode("hang"))
	t.Cleanup(func() { _ = shim.SetMode("ok") }) // before the client closes, even if the test fails
	held := make(chan error, 1)
	go func() {
		_, err := signer.SignMessage(context.Background(), hsmclient.AlgECDSASHA256, []byte("a"))
		held <- err
	}()
	require.Eventually(t, func() bool { return client.Stats()[0].InUse == 1 }, 5*time.Second, time.Millisecond)

	start := time.Now()
	_, err := signer.SignMessage(ctxTimeout(t, 100*time.Millisecond), hsmclient.AlgECDSASHA256, []byte("b"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, hsmclient.ErrPoolExhausted)
	assert.Less(t, time.Since(start), time.Second, "an exhausted pool must not block past the context")

	require.NoError(t, shim.SetMode("ok"))
	require.NoError(t, <-held)
}

func TestClosedSessionIsNotReused(t *testing.T) {
	tok := testhsm.NewToken(t, "stale")
	cc, _ := faultCluster(t, "primary", tok, 0)
	client := openClient(t, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{cc}})
	signer := generateSigner(t, client, "k", hsmclient.KeyEd25519)
	ctx := context.Background()
	_, err := signer.SignMessage(ctx, hsmclient.AlgEd25519, []byte("warm the pool"))
	require.NoError(t, err)
	idle := client.Stats()[0]
	require.Equal(t, 1, idle.Idle)

	// Close the idle pooled session behind the client's back, through the
	// same library instance: handle 1 is the login anchor, 2 the pooled one.
	p := pkcs11.New(cc.Module)
	require.NotNil(t, p)
	require.NoError(t, p.CloseSession(2))

	sig, err := signer.SignMessage(ctx, hsmclient.AlgEd25519, []byte("after"))
	require.NoError(t, err, "the stale session is replaced transparently")
	require.NoError(t, hsmclient.VerifyMessage(signer.Public(), hsmclient.AlgEd25519, []byte("after"), sig))
	after := client.Stats()[0]
	assert.Equal(t, idle.Discarded+1, after.Discarded, "the closed session was discarded, not returned to the pool")
	assert.Equal(t, hsmclient.StateUp, after.State)
}

func TestWrongPINIsTriedExactlyOnce(t *testing.T) {
	tok := testhsm.NewToken(t, "pin")
	cc, shim := faultCluster(t, "primary", tok, 0)
	require.NoError(t, os.WriteFile(cc.PINFile, []byte("999999"), 0o600))

	_, err := hsmclient.Open(context.Background(), hsmclient.Config{Clusters: []hsmclient.ClusterConfig{cc}})
	require.ErrorIs(t, err, hsmclient.ErrPINIncorrect)
	require.ErrorIs(t, err, hsmclient.ErrClusterUnavailable)
	assert.NotContains(t, err.Error(), "999999")
	assert.NotContains(t, err.Error(), tok.UserPIN)
	time.Sleep(300 * time.Millisecond) // a background prober, if there were one, would have tried by now
	assert.Equal(t, 1, counters(t, shim).Logins)
}

func TestOpenReportsConfigurationMistakes(t *testing.T) {
	tok := testhsm.NewToken(t, "real-label")
	ctx := context.Background()

	missing := softCluster(t, "primary", tok)
	missing.Module = filepath.Join(t.TempDir(), "no-such-pkcs11.so")
	_, err := hsmclient.Open(ctx, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{missing}})
	require.ErrorIs(t, err, hsmclient.ErrModuleNotFound)
	assert.Contains(t, err.Error(), "no-such-pkcs11.so")

	notALibrary := softCluster(t, "primary", tok)
	notALibrary.Module = notALibrary.PINFile
	_, err = hsmclient.Open(ctx, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{notALibrary}})
	require.ErrorIs(t, err, hsmclient.ErrModuleNotFound)

	wrongLabel := softCluster(t, "primary", tok)
	wrongLabel.TokenLabel = "nope"
	_, err = hsmclient.Open(ctx, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{wrongLabel}})
	require.ErrorIs(t, err, hsmclient.ErrTokenNotFound)
	assert.Contains(t, err.Error(), `"real-label"`, "the error lists the tokens found")

	noPIN := softCluster(t, "primary", tok)
	noPIN.PINFile, noPIN.PINEnv = "", "HSMCLIENT_TEST_UNSET_PIN"
	_, err = hsmclient.Open(ctx, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{noPIN}})
	require.ErrorIs(t, err, hsmclient.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "HSMCLIENT_TEST_UNSET_PIN")

	// After all those failures the module still works for a correct configuration.
	client := openClient(t, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{softCluster(t, "primary", tok)}})
	_, err = client.Random(ctx, 8)
	require.NoError(t, err)
}

func TestClosedClientRefusesWork(t *testing.T) {
	client, _ := newSoftClient(t)
	require.NoError(t, client.Close())
	_, err := client.Random(context.Background(), 8)
	require.ErrorIs(t, err, hsmclient.ErrClosed)
	require.NoError(t, client.Close(), "Close is idempotent")
}
