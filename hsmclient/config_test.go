package hsmclient_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
)

const validYAML = `
clusters:
  - name: primary
    module: /opt/cloudhsm/lib/libcloudhsm_pkcs11.so
    token_label: hsm1
    pin_env: HSM_PIN
  - name: dr
    module: /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
    slot: 2
    pin_file: /run/secrets/dr.pin
    module_env:
      P11_KIT_SERVER_ADDRESS: unix:path=/run/p11-kit/dr.sock
pool:
  max_sessions: 32
operation_timeout: 750ms
failover:
  failure_threshold: 5
  probe_max_interval: 3s
`

func TestParseConfig(t *testing.T) {
	cfg, err := hsmclient.ParseConfig([]byte(validYAML))
	require.NoError(t, err)
	require.Len(t, cfg.Clusters, 2)
	assert.Equal(t, "hsm1", cfg.Clusters[0].TokenLabel)
	require.NotNil(t, cfg.Clusters[1].Slot)
	assert.Equal(t, uint(2), *cfg.Clusters[1].Slot)
	assert.Equal(t, "unix:path=/run/p11-kit/dr.sock", cfg.Clusters[1].ModuleEnv["P11_KIT_SERVER_ADDRESS"])
	assert.Equal(t, 32, cfg.Pool.MaxSessions)
	assert.Equal(t, hsmclient.Duration(750*time.Millisecond), cfg.OperationTimeout)
	assert.Equal(t, 5, cfg.Failover.FailureThreshold)
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", strings.Replace(validYAML, "max_sessions", "max_sesions", 1), "max_sesions"},
		{"unknown cluster key", strings.Replace(validYAML, "token_label: hsm1", "token_label: hsm1\n    pin: secret", 1), "pin"},
		{"no clusters", "pool:\n  max_sessions: 4\n", "clusters"},
		{"empty", "", "empty"},
		{"missing name", strings.Replace(validYAML, "name: primary", "name: ''", 1), "clusters[0].name"},
		{"duplicate name", strings.Replace(validYAML, "name: dr", "name: primary", 1), "clusters[1].name"},
		{"missing module", strings.Replace(validYAML, "module: /opt/cloudhsm/lib/libcloudhsm_pkcs11.so", "module: ''", 1), "clusters[0].module"},
		{"label and slot", strings.Replace(validYAML, "slot: 2", "slot: 2\n    token_label: x", 1), "clusters[1]: set exactly one of token_label and slot"},
		{"no PIN source", strings.Replace(validYAML, "pin_env: HSM_PIN", "", 1), "clusters[0]: set exactly one of pin_env and pin_file"},
		{"negative pool", strings.Replace(validYAML, "max_sessions: 32", "max_sessions: -1", 1), "pool.max_sessions"},
		{"bad duration", strings.Replace(validYAML, "750ms", "fast", 1), `"fast" is not a duration`},
		{"negative duration", strings.Replace(validYAML, "750ms", "-1s", 1), "operation_timeout"},
		{"wrong type", strings.Replace(validYAML, "slot: 2", "slot: two", 1), "two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hsmclient.ParseConfig([]byte(tc.yaml))
			require.ErrorIs(t, err, hsmclient.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestLoadConfigNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hsmclient.yaml")
	require.NoError(t, os.WriteFile(path, []byte("clusters: []\nbogus: 1\n"), 0o600))
	_, err := hsmclient.LoadConfig(path)
	require.ErrorIs(t, err, hsmclient.ErrInvalidConfig)
	assert.Contains(t, err.Error(), path)
	assert.Contains(t, err.Error(), "bogus")

	_, err = hsmclient.LoadConfig(filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorIs(t, err, hsmclient.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "missing.yaml")
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(validYAML))
	f.Add([]byte("clusters:\n  - name: a\n    module: m\n    slot: 0\n    pin_env: P\n"))
	f.Add([]byte("operation_timeout: 1h\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := hsmclient.ParseConfig(data)
		if err != nil {
			require.ErrorIs(t, err, hsmclient.ErrInvalidConfig)
			return
		}
		require.NoError(t, cfg.Validate(), "a parsed configuration is valid")
		require.NotEmpty(t, cfg.Clusters)
	})
}
