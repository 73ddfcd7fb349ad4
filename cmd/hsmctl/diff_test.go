package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/personapass/hsm/hsmclient"
)

// restoredDR copies the dev directory's token into a second directory (a DR
// cluster restored from a backup) and returns a config naming both clusters.
func restoredDR(t *testing.T, d *devDir) string {
	t.Helper()
	drDir := filepath.Join(t.TempDir(), "dr")
	out, err := exec.Command("cp", "-a", d.dir, drDir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	conf := filepath.Join(drDir, "softhsm2.conf")
	data, err := os.ReadFile(conf)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(conf, []byte(strings.ReplaceAll(string(data), d.dir, drDir)), 0o600))

	cfg, err := hsmclient.LoadConfig(d.config)
	require.NoError(t, err)
	dr := cfg.Clusters[0]
	dr.Name = "dr"
	dr.Module = strings.Replace(dr.Module, d.dir, drDir, 1)
	dr.PINFile = strings.Replace(dr.PINFile, d.dir, drDir, 1)
	dr.ModuleEnv = map[string]string{"SOFTHSM2_CONF": conf}
	cfg.Clusters = append(cfg.Clusters, dr)
	data, err = yaml.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(drDir, "two-clusters.yaml")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

func TestKeysDiff(t *testing.T) {
	d := newDevDir(t)
	d.must(t, nil, "keys", "generate", "--label", "in-backup", "--type", "ed25519")
	both := restoredDR(t, d)
	d.config = both

	assert.Contains(t, d.must(t, nil, "keys", "diff"), "hold the same keys")
	d.must(t, nil, "keys", "generate", "--label", "after-backup", "--type", "ec-p256")

	r := d.run(t, nil, "keys", "diff", "--json")
	require.Equal(t, exitNo, r.code, "%s", r)
	var diffs []hsmclient.KeyDifference
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &diffs))
	require.Len(t, diffs, 1)
	assert.Equal(t, "after-backup", diffs[0].Label)
	assert.Equal(t, []string{"primary"}, diffs[0].PresentOn)
	assert.Equal(t, []string{"dr"}, diffs[0].MissingOn)

	r = d.run(t, nil, "keys", "diff")
	require.Equal(t, exitNo, r.code)
	assert.Contains(t, r.stdout, "MISSING ON")
	assert.Contains(t, r.stdout, "after-backup")
}
