package hsmclient_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/personapass/hsm/hsmclient"
	"github.com/personapass/hsm/internal/faultp11"
	"github.com/personapass/hsm/internal/testhsm"
)

// recorder is an Observer that remembers when each cluster last served an
// operation and counts failovers and recoveries.
type recorder struct {
	mu        sync.Mutex
	firstOK   map[string]time.Time // first success per cluster after reset
	served    map[string]int
	failovers atomic.Int64
	recovered atomic.Int64
}

func newRecorder() *recorder {
	return &recorder{firstOK: map[string]time.Time{}, served: map[string]int{}}
}

func (r *recorder) OperationDone(cluster, _, result string, _ time.Duration) {
	if result != hsmclient.ResultOK {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.firstOK[cluster]; !ok {
		r.firstOK[cluster] = time.Now()
	}
	r.served[cluster]++
}
func (r *recorder) StateChanged(string, hsmclient.State, hsmclient.State) {}
func (r *recorder) FailedOver(string, string, string)                     { r.failovers.Add(1) }
func (r *recorder) Recovered(string)                                      { r.recovered.Add(1) }

// firstSuccessAfterReset forgets earlier successes, then reports the first
// success per cluster from now on.
func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.firstOK = map[string]time.Time{}
	r.served = map[string]int{}
}

func (r *recorder) first(cluster string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.firstOK[cluster]
	return at, ok
}

func (r *recorder) count(cluster string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.served[cluster]
}

// fastFailover makes recovery quick enough for tests while keeping the
// documented mechanism: thresholds, back-off, probes.
var fastFailover = hsmclient.FailoverConfig{
	ProbeMinInterval: hsmclient.Duration(50 * time.Millisecond),
	ProbeMaxInterval: hsmclient.Duration(500 * time.Millisecond),
	RecoveryProbes:   2,
}

// twoClusters is a primary token with keys, a DR token restored from a copy
// of it, and a p11-kit server in front of each.
type twoClusters struct {
	primary, dr       *testhsm.Token
	primarySrv, drSrv *testhsm.Server
}

// restoredPair creates the primary token, lets seed create keys on it, then
// "restores a backup" of it into a DR token.
func restoredPair(t *testing.T, seed func(*hsmclient.Client)) (primary, dr *testhsm.Token) {
	t.Helper()
	primary = testhsm.NewToken(t, "persona")
	seeder, err := hsmclient.Open(context.Background(), hsmclient.Config{Clusters: []hsmclient.ClusterConfig{softCluster(t, "seed", primary)}})
	require.NoError(t, err)
	seed(seeder)
	require.NoError(t, seeder.Close())
	return primary, primary.CopyTo(t)
}

// newTwoClusters creates the primary token, lets seed create keys on it, then
// "restores a backup" into the DR token and starts both servers.
func newTwoClusters(t *testing.T, seed func(*hsmclient.Client)) *twoClusters {
	t.Helper()
	primary, dr := restoredPair(t, seed)
	return &twoClusters{primary: primary, dr: dr, primarySrv: testhsm.StartServer(t, primary), drSrv: testhsm.StartServer(t, dr)}
}

func (tc *twoClusters) config(t *testing.T, obs hsmclient.Observer) hsmclient.Config {
	return hsmclient.Config{
		Clusters: []hsmclient.ClusterConfig{
			clusterOf(t, "primary", tc.primary, tc.primarySrv.ClientModule, tc.primarySrv.Env()),
			clusterOf(t, "dr", tc.dr, tc.drSrv.ClientModule, tc.drSrv.Env()),
		},
		OperationTimeout: hsmclient.Duration(time.Second),
		Failover:         fastFailover,
		Observer:         obs,
		Logger:           testLogger(),
	}
}

// testLogger shows the client's events when HSMCLIENT_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("HSMCLIENT_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func seedKey(label string, kt hsmclient.KeyType) func(*hsmclient.Client) {
	return func(c *hsmclient.Client) {
		if _, err := c.GenerateKey(context.Background(), label, kt); err != nil {
			panic(err)
		}
	}
}

// signLoop runs workers that sign and verify until stop closes, counting
// successes and collecting failures.
type signLoop struct {
	ok       atomic.Int64
	mu       sync.Mutex
	failures []error
	wg       sync.WaitGroup
}

func startSigning(signer *hsmclient.Signer, alg hsmclient.Algorithm, workers int, deadline time.Duration, stop <-chan struct{}) *signLoop {
	l := &signLoop{}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			msg := []byte{'v', 'c', byte(w)}
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				sig, err := signer.SignMessage(ctx, alg, msg)
				cancel()
				if err == nil {
					err = hsmclient.VerifyMessage(signer.Public(), alg, msg, sig)
				}
				if err != nil {
					l.mu.Lock()
					l.failures = append(l.failures, err)
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

func (l *signLoop) wait(t *testing.T) {
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, err := range l.failures {
		if i == 5 {
			t.Errorf("... and %d more failures", len(l.failures)-5)
			break
		}
		t.Errorf("signing failed: %v", err)
	}
}

func TestFailoverOnKillAndFailBackOnRestart(t *testing.T) {
	tc := newTwoClusters(t, seedKey("issuer", hsmclient.KeyECP256))
	rec := newRecorder()
	client := openClient(t, tc.config(t, rec))
	signer, err := client.Signer(context.Background(), "issuer")
	require.NoError(t, err)

	stop := make(chan struct{})
	loop := startSigning(signer, hsmclient.AlgECDSASHA256, 32, 5*time.Second, stop)
	time.Sleep(5 * time.Second)
	require.Zero(t, rec.count("dr"), "the DR cluster is idle while the primary is healthy")

	rec.reset()
	killed := time.Now()
	tc.primarySrv.Kill()
	require.Eventually(t, func() bool { _, ok := rec.first("dr"); return ok }, 2*time.Second, time.Millisecond)
	firstDR, _ := rec.first("dr")
	assert.Less(t, firstDR.Sub(killed), time.Second, "first DR success within 1 s of the kill")

	time.Sleep(time.Until(killed.Add(7 * time.Second)))
	rec.reset()
	restarted := time.Now()
	tc.primarySrv.Restart(t)
	require.Eventually(t, func() bool { _, ok := rec.first("primary"); return ok }, 6*time.Second, 10*time.Millisecond)
	back, _ := rec.first("primary")
	assert.Less(t, back.Sub(restarted), 5*time.Second, "traffic back on the primary within 5 s of its return")

	time.Sleep(time.Until(restarted.Add(8 * time.Second)))
	close(stop)
	loop.wait(t)
	t.Logf("%d signatures; failovers %d, recoveries %d", loop.ok.Load(), rec.failovers.Load(), rec.recovered.Load())
	assert.Positive(t, rec.recovered.Load())
	assert.Equal(t, hsmclient.StateUp, client.Stats()[0].State)
}

func TestHungPrimaryDoesNotHoldCallersPastTheirDeadline(t *testing.T) {
	tc := newTwoClusters(t, seedKey("issuer", hsmclient.KeyECP256))
	rec := newRecorder()
	cfg := tc.config(t, rec)
	cfg.OperationTimeout = hsmclient.Duration(2 * time.Second)
	client := openClient(t, cfg)
	signer, err := client.Signer(context.Background(), "issuer")
	require.NoError(t, err)

	tc.primarySrv.Stop()
	t.Cleanup(tc.primarySrv.Continue)
	const deadline = 800 * time.Millisecond
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				_, err := signer.SignMessage(ctx, hsmclient.AlgECDSASHA256, []byte{byte(w)})
				took := time.Since(start)
				cancel()
				assert.NoError(t, err, "the call completes on DR")
				for old := slowest.Load(); took.Nanoseconds() > old && !slowest.CompareAndSwap(old, took.Nanoseconds()); old = slowest.Load() {
				}
			}
		}()
	}
	wg.Wait()
	assert.Less(t, time.Duration(slowest.Load()), deadline+100*time.Millisecond, "no caller waits past its deadline plus a small margin")
	assert.Positive(t, rec.count("dr"))
	assert.Equal(t, hsmclient.StateDown, client.Stats()[0].State, "repeated timeouts open the primary's breaker")

	tc.primarySrv.Continue()
	require.Eventually(t, func() bool { return client.Stats()[0].State == hsmclient.StateUp }, 5*time.Second, 10*time.Millisecond)
}

func TestBothClustersDownFailFastThenRecover(t *testing.T) {
	tc := newTwoClusters(t, seedKey("issuer", hsmclient.KeyECP256))
	client := openClient(t, tc.config(t, nil))
	signer, err := client.Signer(context.Background(), "issuer")
	require.NoError(t, err)
	ctx := context.Background()

	tc.primarySrv.Kill()
	tc.drSrv.Kill()
	for range 3 { // the first calls discover the outage
		_, _ = signer.SignMessage(ctx, hsmclient.AlgECDSASHA256, []byte("x"))
	}
	start := time.Now()
	_, err = signer.SignMessage(ctx, hsmclient.AlgECDSASHA256, []byte("x"))
	require.ErrorIs(t, err, hsmclient.ErrClusterUnavailable)
	assert.Less(t, time.Since(start), 50*time.Millisecond, "fail fast while every breaker is open")
	assert.False(t, client.Health(ctx).Ready())

	tc.drSrv.Restart(t)
	require.Eventually(t, func() bool {
		_, err := signer.SignMessage(ctx, hsmclient.AlgECDSASHA256, []byte("x"))
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "calls succeed again once a cluster returns, without a new client")
	assert.True(t, client.Health(ctx).Ready())
}

func TestWrongPINOnDRIsTriedOnceAndPrimaryKeepsServing(t *testing.T) {
	tc := newTwoClusters(t, seedKey("issuer", hsmclient.KeyECP256))
	cfg := tc.config(t, nil)
	shim := testhsm.FaultModule(t, tc.drSrv.ClientModule, 0)
	dr := clusterOf(t, "dr", tc.dr, shim.Path, shim.Env())
	dr.ModuleEnv["P11_KIT_SERVER_ADDRESS"] = tc.drSrv.Address()
	require.NoError(t, os.WriteFile(dr.PINFile, []byte("000000"), 0o600))
	cfg.Clusters[1] = dr

	client := openClient(t, cfg)
	ctx := context.Background()
	signer, err := client.Signer(ctx, "issuer")
	require.NoError(t, err)
	for range 20 {
		_, err := signer.SignMessage(ctx, hsmclient.AlgECDSASHA256, []byte("x"))
		require.NoError(t, err)
	}
	report := client.Health(ctx)
	require.Equal(t, hsmclient.StateDown, report.Clusters[1].State)
	assert.Contains(t, report.Clusters[1].LastError, "PIN incorrect")
	assert.NotContains(t, report.Clusters[1].LastError, "000000")

	tc.primarySrv.Kill() // even with the primary gone, the DR PIN is not retried
	_, err = signer.SignMessage(ctx, hsmclient.AlgECDSASHA256, []byte("x"))
	require.ErrorIs(t, err, hsmclient.ErrClusterUnavailable)
	time.Sleep(time.Second)
	assert.Equal(t, 1, counters(t, shim).Logins, "exactly one login attempt on DR")
}

// faultClusters is two SoftHSM tokens (DR restored from the primary) behind
// faultp11 shims, for the mechanisms p11-kit cannot carry (EdDSA, AES-GCM).
func faultClusters(t *testing.T, seed func(*hsmclient.Client)) (hsmclient.Config, *faultp11.Module, *faultp11.Module) {
	t.Helper()
	primary, dr := restoredPair(t, seed)
	// The seeding client used primary.Module; the shim needs a fresh copy.
	primaryModule := filepath.Join(t.TempDir(), "libsofthsm2.so")
	data, err := os.ReadFile(primary.Module)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(primaryModule, data, 0o755))
	pc, pshim := faultClusterOn(t, "primary", primary, primaryModule)
	dc, dshim := faultClusterOn(t, "dr", dr, dr.Module)
	return hsmclient.Config{Clusters: []hsmclient.ClusterConfig{pc, dc}, OperationTimeout: hsmclient.Duration(time.Second), Failover: fastFailover}, pshim, dshim
}

func faultClusterOn(t *testing.T, name string, tok *testhsm.Token, module string) (hsmclient.ClusterConfig, *faultp11.Module) {
	shim := testhsm.FaultModule(t, module, 0)
	t.Cleanup(func() { _ = shim.SetMode(faultp11.ModeOK) })
	return clusterOf(t, name, tok, shim.Path, shim.Env()), shim
}

func TestEd25519AndAESFailOverAndRecover(t *testing.T) {
	cfg, primary, _ := faultClusters(t, func(c *hsmclient.Client) {
		seedKey("did", hsmclient.KeyEd25519)(c)
		seedKey("vault", hsmclient.KeyAES256)(c)
	})
	rec := newRecorder()
	cfg.Observer = rec
	client := openClient(t, cfg)
	ctx := context.Background()
	signer, err := client.Signer(ctx, "did")
	require.NoError(t, err)
	sealed, err := client.Encrypt(ctx, "vault", []byte("secret"), nil)
	require.NoError(t, err)

	require.NoError(t, primary.SetMode(faultp11.ModeDown))
	rec.reset()
	for range 10 {
		sig, err := signer.SignMessage(ctx, hsmclient.AlgEd25519, []byte("m"))
		require.NoError(t, err)
		require.NoError(t, hsmclient.VerifyMessage(signer.Public(), hsmclient.AlgEd25519, []byte("m"), sig))
		opened, err := client.Decrypt(ctx, "vault", sealed, nil)
		require.NoError(t, err, "data sealed on the primary opens on DR: same key from the backup")
		assert.Equal(t, []byte("secret"), opened)
	}
	assert.Zero(t, rec.count("primary"))
	assert.Equal(t, 20, rec.count("dr"))

	_, err = client.GenerateKey(ctx, "new", hsmclient.KeyEd25519)
	require.ErrorIs(t, err, hsmclient.ErrClusterUnavailable, "key creation is not redirected to DR")
	assert.Contains(t, err.Error(), `"primary"`)
	require.ErrorIs(t, client.DeleteKey(ctx, "did"), hsmclient.ErrClusterUnavailable)

	require.NoError(t, primary.SetMode(faultp11.ModeOK))
	require.Eventually(t, func() bool { return client.Stats()[0].State == hsmclient.StateUp }, 5*time.Second, 10*time.Millisecond)
	rec.reset()
	_, err = signer.SignMessage(ctx, hsmclient.AlgEd25519, []byte("m"))
	require.NoError(t, err)
	assert.Equal(t, 1, rec.count("primary"), "fail-back after recovery")
}

func TestThrottlingIsRetriedOnTheSameCluster(t *testing.T) {
	cfg, primary, _ := faultClusters(t, seedKey("did", hsmclient.KeyEd25519))
	rec := newRecorder()
	cfg.Observer = rec
	client := openClient(t, cfg)
	ctx := context.Background()
	signer, err := client.Signer(ctx, "did")
	require.NoError(t, err)

	require.NoError(t, primary.SetMode(faultp11.Busy(2))) // within the default 3 retries
	rec.reset()
	_, err = signer.SignMessage(ctx, hsmclient.AlgEd25519, []byte("m"))
	require.NoError(t, err)
	assert.Equal(t, 1, rec.count("primary"))
	assert.Zero(t, rec.failovers.Load(), "a briefly busy HSM is not a failover")

	require.NoError(t, primary.SetMode(faultp11.Busy(100))) // longer than the retry budget
	rec.reset()
	_, err = signer.SignMessage(ctx, hsmclient.AlgEd25519, []byte("m"))
	require.NoError(t, err)
	assert.Equal(t, 1, rec.count("dr"), "a persistently busy HSM fails over")
	assert.Equal(t, hsmclient.StateDegraded, client.Stats()[0].State)
}

// outageCycles takes the primary down and back n times under signing load,
// waiting each time until the client has failed over and recovered.
func outageCycles(t *testing.T, client *hsmclient.Client, n int, down, up func()) {
	t.Helper()
	for range n {
		down()
		require.Eventually(t, func() bool { return client.Stats()[0].State == hsmclient.StateDown }, 5*time.Second, time.Millisecond)
		up()
		require.Eventually(t, func() bool { return client.Stats()[0].State == hsmclient.StateUp }, 10*time.Second, time.Millisecond)
	}
}

// Outages injected in the module (every call fails with CKR_DEVICE_ERROR
// until the module is re-initialized) leave nothing behind: goroutines,
// file descriptors, heap and sessions at the token stay flat over 50 cycles.
func TestRepeatedOutagesLeakNothing(t *testing.T) {
	cfg, primary, _ := faultClusters(t, seedKey("did", hsmclient.KeyEd25519))
	cfg.Failover.ProbeMinInterval = hsmclient.Duration(10 * time.Millisecond)
	cfg.Failover.ProbeMaxInterval = hsmclient.Duration(50 * time.Millisecond)
	ignore := goleak.IgnoreCurrent()
	client, err := hsmclient.Open(context.Background(), cfg)
	require.NoError(t, err)
	signer, err := client.Signer(context.Background(), "did")
	require.NoError(t, err)

	down := func() { require.NoError(t, primary.SetMode(faultp11.ModeDown)) }
	up := func() { require.NoError(t, primary.SetMode(faultp11.ModeOK)) }
	underLoad(t, signer, hsmclient.AlgEd25519, func() { outageCycles(t, client, 5, down, up) }) // warm up
	before := snapshot()
	const cycles = 50
	signed := underLoad(t, signer, hsmclient.AlgEd25519, func() { outageCycles(t, client, cycles, down, up) })
	after := snapshot()
	t.Logf("%d signatures over %d outages; before %+v after %+v", signed, cycles, before, after)

	assert.LessOrEqual(t, after.goroutines, before.goroutines+2, "goroutines")
	assert.LessOrEqual(t, after.fds, before.fds+2, "file descriptors")
	assert.Less(t, after.heap, before.heap+8<<20, "heap")
	stats := client.Stats()[0]
	assert.Zero(t, stats.Stale)
	seen := counters(t, primary)
	assert.LessOrEqual(t, seen.Sessions, stats.MaxOpen+1, "sessions open at the token (pool plus login anchor)")
	require.NoError(t, client.Close())
	goleak.VerifyNone(t, ignore)
}

// Killing and restarting a p11-kit server 50 times under load: every outage
// fails over with no failed call and every return fails back. p11-kit 0.24's
// client can leave a call blocked forever when its server dies mid-call (it
// returns from rpc_socket_read holding its read lock); the client must
// recover anyway, and such calls must neither shrink the pool nor leak
// descriptors.
func TestP11KitKillRestartCycles(t *testing.T) {
	tc := newTwoClusters(t, seedKey("issuer", hsmclient.KeyECP256))
	cfg := tc.config(t, nil)
	cfg.OperationTimeout = hsmclient.Duration(300 * time.Millisecond)
	cfg.Failover.ProbeMinInterval = hsmclient.Duration(10 * time.Millisecond)
	cfg.Failover.ProbeMaxInterval = hsmclient.Duration(50 * time.Millisecond)
	client := openClient(t, cfg)
	signer, err := client.Signer(context.Background(), "issuer")
	require.NoError(t, err)

	kill := func() { tc.primarySrv.Kill() }
	restart := func() { tc.primarySrv.Restart(t) }
	underLoad(t, signer, hsmclient.AlgECDSASHA256, func() { outageCycles(t, client, 3, kill, restart) })
	before := snapshot()
	const cycles = 50
	signed := underLoad(t, signer, hsmclient.AlgECDSASHA256, func() { outageCycles(t, client, cycles, kill, restart) })
	after := snapshot()
	stats := client.Stats()[0]
	t.Logf("%d signatures over %d kills; before %+v after %+v; calls stuck in p11-kit: %d", signed, cycles, before, after, stats.Stale)
	assert.LessOrEqual(t, after.fds, before.fds+2, "file descriptors")
	assert.LessOrEqual(t, after.goroutines, before.goroutines+2+stats.Stale, "goroutines beyond those stuck inside p11-kit")
	assert.Less(t, after.heap, before.heap+8<<20, "heap")
	assert.LessOrEqual(t, stats.Open, stats.MaxOpen, "sessions")
}

// underLoad runs fn while 8 workers sign and verify, requires that no call
// failed, and returns how many signatures were made.
func underLoad(t *testing.T, signer *hsmclient.Signer, alg hsmclient.Algorithm, fn func()) int64 {
	t.Helper()
	stop := make(chan struct{})
	loop := startSigning(signer, alg, 8, 5*time.Second, stop)
	fn()
	close(stop)
	loop.wait(t)
	return loop.ok.Load()
}

type usage struct {
	goroutines, fds int
	heap            uint64
}

func snapshot() usage {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fds, _ := os.ReadDir("/proc/self/fd")
	return usage{goroutines: runtime.NumGoroutine(), fds: len(fds), heap: m.HeapAlloc}
}
