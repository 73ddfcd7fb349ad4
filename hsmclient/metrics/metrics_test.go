package metrics_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
	"github.com/personapass/hsm/hsmclient/metrics"
	"github.com/personapass/hsm/internal/faultp11"
	"github.com/personapass/hsm/internal/testhsm"
)

func cluster(t *testing.T, name string, tok *testhsm.Token, module string, env map[string]string) hsmclient.ClusterConfig {
	pin := filepath.Join(t.TempDir(), "pin")
	require.NoError(t, os.WriteFile(pin, []byte(tok.UserPIN), 0o600))
	all := tok.Env()
	for k, v := range env {
		all[k] = v
	}
	return hsmclient.ClusterConfig{Name: name, Module: module, TokenLabel: tok.Label, PINFile: pin, ModuleEnv: all}
}

func TestCollectorCountsOperationsFailoversAndPools(t *testing.T) {
	primary := testhsm.NewToken(t, "metrics")
	dr := primary.CopyTo(t)
	shim := testhsm.FaultModule(t, primary.Module, 0)
	t.Cleanup(func() { _ = shim.SetMode(faultp11.ModeOK) })

	m := metrics.New()
	client, err := hsmclient.Open(context.Background(), hsmclient.Config{
		Clusters: []hsmclient.ClusterConfig{
			cluster(t, "primary", primary, shim.Path, shim.Env()),
			cluster(t, "dr", dr, dr.Module, nil),
		},
		Failover: hsmclient.FailoverConfig{ProbeMinInterval: hsmclient.Duration(20 * time.Millisecond), ProbeMaxInterval: hsmclient.Duration(100 * time.Millisecond)},
		Observer: m,
	})
	require.NoError(t, err)
	defer client.Close()
	m.Watch(client)
	registry := prometheus.NewRegistry()
	require.NoError(t, registry.Register(m))

	ctx := context.Background()
	for range 3 {
		_, err := client.Random(ctx, 16)
		require.NoError(t, err)
	}
	require.NoError(t, shim.SetMode(faultp11.ModeDown))
	_, err = client.Random(ctx, 16)
	require.NoError(t, err, "served by DR")
	require.NoError(t, shim.SetMode(faultp11.ModeOK))
	require.Eventually(t, func() bool { return client.Stats()[0].State == hsmclient.StateUp }, 5*time.Second, 10*time.Millisecond)

	families, err := registry.Gather()
	require.NoError(t, err)
	var out strings.Builder
	for _, f := range families {
		_, err := expfmt.MetricFamilyToText(&out, f)
		require.NoError(t, err)
	}
	text := out.String()
	for _, want := range []string{
		`hsmclient_operations_total{cluster="primary",op="random",result="ok"} 3`,
		`hsmclient_operations_total{cluster="primary",op="random",result="error"} 1`,
		`hsmclient_operations_total{cluster="dr",op="random",result="ok"} 1`,
		`hsmclient_failovers_total{from="primary",op="random",to="dr"} 1`,
		`hsmclient_recoveries_total{cluster="primary"} 1`,
		`hsmclient_cluster_state{cluster="primary",state="up"} 1`,
		`hsmclient_cluster_state{cluster="primary",state="down"} 0`,
		`hsmclient_pool_max_sessions{cluster="primary"} 15`,
		`hsmclient_operation_duration_seconds_count{cluster="dr",op="random",result="ok"} 1`,
	} {
		assert.Contains(t, text, want)
	}
	problems, err := testutil.CollectAndLint(m)
	require.NoError(t, err)
	assert.Empty(t, problems)
	assert.False(t, strings.Contains(text, primary.UserPIN), "no PIN in metrics")
}
