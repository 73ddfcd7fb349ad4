package main

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
)

// result is what one hsmctl run printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// hsmctl runs the real command tree in-process with args, feeding stdin.
// HSMCTL_CONFIG is cleared unless the test sets it (tests are not parallel:
// they change the environment, and SoftHSM reads it at C_Initialize).
func hsmctl(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, bytes.NewReader(stdin), &out, &errOut)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// mustRun runs hsmctl and requires exit code 0 and nothing on stderr.
func mustRun(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	r := hsmctl(t, stdin, args...)
	require.Equal(t, 0, r.code, "hsmctl %v\n%s", args, r)
	require.Empty(t, r.stderr, "hsmctl %v", args)
	return r.stdout
}

// requireOneLineError checks the error contract: a non-zero exit code, one
// line on stderr starting with "hsmctl: ", and no usage dump.
func requireOneLineError(t *testing.T, r result, wantCode int, contains string) {
	t.Helper()
	require.Equal(t, wantCode, r.code, "%s", r)
	require.True(t, strings.HasPrefix(r.stderr, "hsmctl: "), "stderr must start with hsmctl: %q", r.stderr)
	require.True(t, strings.HasSuffix(r.stderr, "\n"), "stderr must end with a newline: %q", r.stderr)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "stderr must be one line: %q", r.stderr)
	require.NotContains(t, r.stderr+r.stdout, "Usage:")
	if contains != "" {
		require.Contains(t, r.stderr, contains)
	}
}

// devDir is a directory made by "hsmctl dev init".
type devDir struct {
	dir, config string
	pins        []string
}

// newDevDir runs dev init in a new temporary directory.
func newDevDir(t *testing.T) *devDir {
	t.Helper()
	t.Setenv(configEnv, "")
	dir := filepath.Join(t.TempDir(), "dev")
	out := mustRun(t, nil, "dev", "init", "--dir", dir)
	require.Contains(t, out, "personapass-primary")
	d := &devDir{dir: dir, config: filepath.Join(dir, "hsmclient.yaml")}
	for _, name := range []string{"so.pin", "user.pin"} {
		p := filepath.Join(dir, "pins", name)
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "%s mode", p)
		pin, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NotEmpty(t, strings.TrimSpace(string(pin)))
		d.pins = append(d.pins, strings.TrimSpace(string(pin)))
	}
	require.FileExists(t, d.config)
	require.FileExists(t, filepath.Join(dir, "lib", "libsofthsm2.so"))
	return d
}

// run runs hsmctl --config d.config args...
func (d *devDir) run(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	r := hsmctl(t, stdin, append([]string{"--config", d.config}, args...)...)
	d.requireNoPIN(t, r)
	return r
}

// must runs hsmctl --config d.config args... and requires success.
func (d *devDir) must(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	r := d.run(t, stdin, args...)
	require.Equal(t, 0, r.code, "hsmctl %v\n%s", args, r)
	require.Empty(t, r.stderr, "hsmctl %v", args)
	return r.stdout
}

// requireNoPIN checks that no PIN of the token appears in the output.
func (d *devDir) requireNoPIN(t *testing.T, r result) {
	t.Helper()
	for _, pin := range d.pins {
		require.NotContains(t, r.stdout, pin, "a PIN was printed")
		require.NotContains(t, r.stderr, pin, "a PIN was printed")
	}
}

// parsePublicKeyPEM reads the PEM that pubkey prints.
func parsePublicKeyPEM(t *testing.T, data []byte) crypto.PublicKey {
	t.Helper()
	pub, err := hsmclient.ParsePublicKeyPEM(data)
	require.NoError(t, err, "PEM %q", data)
	return pub
}

// writeFile writes data to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}
