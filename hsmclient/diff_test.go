package hsmclient_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
)

func TestDiffKeysFindsKeysMissingOnDR(t *testing.T) {
	cfg, _, _ := faultClusters(t, seedKey("in-backup", hsmclient.KeyEd25519))
	client := openClient(t, cfg)
	ctx := context.Background()

	diffs, err := client.DiffKeys(ctx)
	require.NoError(t, err)
	assert.Empty(t, diffs, "the DR copy holds every key of the backup")

	created, err := client.GenerateKey(ctx, "after-backup", hsmclient.KeyECP256)
	require.NoError(t, err)
	diffs, err = client.DiffKeys(ctx)
	require.NoError(t, err)
	require.Len(t, diffs, 1)
	assert.Equal(t, hsmclient.KeyDifference{
		Label: "after-backup", ID: created.ID, Type: hsmclient.KeyECP256,
		PresentOn: []string{"primary"}, MissingOn: []string{"dr"},
	}, diffs[0])
}
