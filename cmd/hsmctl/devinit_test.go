package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDevInitModule: a --module that is not a PKCS#11 library is refused
// before anything is copied, so a later dev init works; an explicit --module
// replaces a bad copy left in DIR/lib.
func TestDevInitModule(t *testing.T) {
	t.Setenv(configEnv, "")
	work := t.TempDir()
	bad := writeFile(t, work, "not-a-library.so", []byte("#!/bin/sh\necho not a library\n"))

	dir := filepath.Join(work, "dev")
	lib := filepath.Join(dir, "lib", "libsofthsm2.so")
	requireOneLineError(t, hsmctl(t, nil, "dev", "init", "--dir", dir, "--module", bad), exitError,
		"--module: "+bad+" is not a loadable PKCS#11 library")
	assert.NoFileExists(t, lib)
	requireOneLineError(t, hsmctl(t, nil, "dev", "init", "--dir", dir, "--module", filepath.Join(work, "missing.so")), exitError,
		"no such file")
	assert.NoFileExists(t, lib)
	assert.Contains(t, mustRun(t, nil, "dev", "init", "--dir", dir), "ready")
	require.FileExists(t, lib)

	// A bad copy left in DIR/lib (as older versions did): dev init says how
	// to repair it, and an explicit --module replaces it.
	sys, err := findSoftHSM()
	if err != nil {
		t.Skip(err)
	}
	dir2 := filepath.Join(work, "dev2")
	lib2 := filepath.Join(dir2, "lib", "libsofthsm2.so")
	require.NoError(t, os.MkdirAll(filepath.Dir(lib2), 0o700))
	require.NoError(t, os.WriteFile(lib2, []byte("garbage"), 0o755))
	requireOneLineError(t, hsmctl(t, nil, "dev", "init", "--dir", dir2), exitError, "pass --module")
	assert.Contains(t, mustRun(t, nil, "dev", "init", "--dir", dir2, "--module", sys), "ready")
	got, err := os.ReadFile(lib2)
	require.NoError(t, err)
	want, err := os.ReadFile(sys)
	require.NoError(t, err)
	assert.True(t, len(got) == len(want) && string(got) == string(want), "DIR/lib was not replaced by --module")
	assert.Equal(t, "no keys\n", mustRun(t, nil, "--config", filepath.Join(dir2, "hsmclient.yaml"), "keys", "list"))
}
