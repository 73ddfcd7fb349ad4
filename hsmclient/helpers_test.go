package hsmclient_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
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
