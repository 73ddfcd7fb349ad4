package hsmclient

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/internal/testhsm"
)

// Another process can generate the same label between our existence check
// and our generation; claimLabel then removes our key and keeps theirs.
func TestClaimLabelYieldsToAnEarlierKey(t *testing.T) {
	tok := testhsm.NewToken(t, "claim")
	pin := filepath.Join(t.TempDir(), "pin")
	require.NoError(t, os.WriteFile(pin, []byte(tok.UserPIN), 0o600))
	client, err := Open(context.Background(), Config{Clusters: []ClusterConfig{{
		Name: "primary", Module: tok.Module, TokenLabel: tok.Label, PINFile: pin, ModuleEnv: tok.Env(),
	}}})
	require.NoError(t, err)
	defer client.Close()

	theirs, ours := []byte("their-key-id-001"), []byte("our-key-id-00002")
	ks := spec(KeyECP256)
	// The checks run on the call's goroutine, so they report with assert and
	// hand errors back rather than stopping the test there.
	_, err = call(context.Background(), client.clusters[0], time.Minute, func(s *session) (struct{}, error) {
		if err := ks.generate(s, "contested", theirs); err != nil {
			return struct{}{}, err
		}
		assert.NoError(t, claimLabel(s, "contested", theirs), "alone, the label is ours")
		if err := ks.generate(s, "contested", ours); err != nil {
			return struct{}{}, err
		}
		assert.ErrorIs(t, claimLabel(s, "contested", ours), ErrKeyExists)
		left, err := findKeyObjects(s, "contested", nil)
		assert.NoError(t, err)
		assert.Len(t, left, 2, "their key pair stays")
		mine, err := findKeyObjects(s, "contested", ours)
		assert.NoError(t, err)
		assert.Empty(t, mine, "our key pair is gone")
		return struct{}{}, nil
	})
	require.NoError(t, err)
}
