package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDemo runs the demo from an empty directory, as a new user would: it
// creates .dev/ with a token, generates the keys, signs, verifies with Go and
// openssl, and checks AES-GCM. A second run reuses the token and keys.
func TestDemo(t *testing.T) {
	t.Setenv(configEnv, "")
	t.Chdir(t.TempDir())

	r := hsmctl(t, nil, "demo")
	require.Equal(t, 0, r.code, "%s", r)
	require.Empty(t, r.stderr)
	assert.Contains(t, r.stdout, "No configuration found")
	assert.Contains(t, r.stdout, "Demo passed")
	assert.NotContains(t, r.stdout, "FAIL")
	for _, k := range demoKeys {
		assert.Contains(t, r.stdout, demoLabel(k))
	}
	assert.Equal(t, 5, strings.Count(r.stdout, "generated in "))
	require.FileExists(t, filepath.Join(".dev", "hsmclient.yaml"))
	for _, name := range []string{"so.pin", "user.pin"} {
		pin, err := os.ReadFile(filepath.Join(".dev", "pins", name))
		require.NoError(t, err)
		assert.NotContains(t, r.stdout, strings.TrimSpace(string(pin)))
	}

	r = hsmctl(t, nil, "demo")
	require.Equal(t, 0, r.code, "%s", r)
	assert.NotContains(t, r.stdout, "No configuration found")
	assert.Equal(t, 5, strings.Count(r.stdout, "existing"))
	assert.Contains(t, r.stdout, "Demo passed")

	// A demo key of the wrong type is an error, not a silent replacement.
	mustRun(t, nil, "keys", "delete", "--label", "demo-ed25519")
	mustRun(t, nil, "keys", "generate", "--label", "demo-ed25519", "--type", "ec-p256")
	r = hsmctl(t, nil, "demo")
	requireOneLineError(t, r, exitError, `"demo-ed25519" exists but is ec-p256`)
}
