package hsmclient_test

import (
	"context"
	"crypto"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
	"github.com/personapass/hsm/internal/faultp11"
	"github.com/personapass/hsm/internal/testhsm"
)

// clusterOf describes a test cluster on a SoftHSM token, reached through
// module with env (the token's own module copy, a p11-kit client, or a faultp11 shim).
func clusterOf(t testing.TB, name string, tok *testhsm.Token, module string, env map[string]string) hsmclient.ClusterConfig {
	t.Helper()
	pinFile := filepath.Join(t.TempDir(), name+".pin")
	require.NoError(t, os.WriteFile(pinFile, []byte(tok.UserPIN+"\n"), 0o600))
	all := maps.Clone(tok.Env())
	maps.Copy(all, env)
	return hsmclient.ClusterConfig{Name: name, Module: module, TokenLabel: tok.Label, PINFile: pinFile, ModuleEnv: all}
}

// softCluster is a cluster served directly by the token's own SoftHSM copy.
func softCluster(t testing.TB, name string, tok *testhsm.Token) hsmclient.ClusterConfig {
	return clusterOf(t, name, tok, tok.Module, nil)
}

// openClient opens a client on the given clusters, closed when the test ends.
func openClient(t testing.TB, cfg hsmclient.Config) *hsmclient.Client {
	t.Helper()
	client, err := hsmclient.Open(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	return client
}

// newSoftClient opens a client on one fresh SoftHSM token.
func newSoftClient(t testing.TB) (*hsmclient.Client, *testhsm.Token) {
	t.Helper()
	tok := testhsm.NewToken(t, "unit")
	return openClient(t, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{softCluster(t, "primary", tok)}}), tok
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// inspect opens a raw session on tok through a second copy of its module
// (one process initializes one library path once), to seed or examine the
// token behind the client's back.
func inspect(t testing.TB, tok *testhsm.Token) (*pkcs11.Ctx, pkcs11.SessionHandle) {
	t.Helper()
	data, err := os.ReadFile(tok.Module)
	require.NoError(t, err)
	module := filepath.Join(t.TempDir(), "inspect-libsofthsm2.so")
	require.NoError(t, os.WriteFile(module, data, 0o755))
	return testhsm.OpenSession(t, module, tok.Env(), tok.Label, tok.UserPIN)
}

// opensslVerify checks sig over msg with the openssl command line, from the
// PEM the client exports. extra selects the scheme (e.g. PSS options).
func opensslVerify(t testing.TB, pub crypto.PublicKey, msg, sig []byte, args ...string) {
	t.Helper()
	dir := t.TempDir()
	pemBytes, err := hsmclient.MarshalPublicKeyPEM(pub)
	require.NoError(t, err)
	files := map[string][]byte{"pub.pem": pemBytes, "msg": msg, "sig": sig}
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "openssl %v: %s", args, out)
}

// opensslDigestVerify is opensslVerify for hash-then-sign schemes.
func opensslDigestVerify(t testing.TB, pub crypto.PublicKey, hash string, msg, sig []byte, sigopts ...string) {
	t.Helper()
	args := []string{"dgst", "-" + hash, "-verify", "pub.pem", "-signature", "sig"}
	for _, o := range sigopts {
		args = append(args, "-sigopt", o)
	}
	opensslVerify(t, pub, msg, sig, append(args, "msg")...)
}

// generateSigner makes a key of type kt and returns its signer.
func generateSigner(t testing.TB, client *hsmclient.Client, label string, kt hsmclient.KeyType) *hsmclient.Signer {
	t.Helper()
	ctx := context.Background()
	_, err := client.GenerateKey(ctx, label, kt)
	require.NoError(t, err)
	signer, err := client.Signer(ctx, label)
	require.NoError(t, err)
	return signer
}

// faultCluster is a cluster reached through a faultp11 shim in front of the
// token's SoftHSM copy, so tests can inject faults and count what reaches the token.
func faultCluster(t testing.TB, name string, tok *testhsm.Token, latency time.Duration) (hsmclient.ClusterConfig, *faultp11.Module) {
	t.Helper()
	shim := testhsm.FaultModule(t, tok.Module, latency)
	return clusterOf(t, name, tok, shim.Path, shim.Env()), shim
}

func counters(t testing.TB, shim *faultp11.Module) faultp11.Counters {
	t.Helper()
	c, err := shim.ReadCounters()
	require.NoError(t, err)
	return c
}

func mustToken(t testing.TB) *testhsm.Token { return testhsm.NewToken(t, "unit") }
