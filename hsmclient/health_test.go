package hsmclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient"
	"github.com/personapass/hsm/internal/faultp11"
)

func TestHealthEndpointsFollowClusterState(t *testing.T) {
	cfg, primary, dr := faultClusters(t, seedKey("did", hsmclient.KeyEd25519))
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client := openClient(t, cfg)
	server := httptest.NewServer(client.HealthHandler())
	defer server.Close()

	get := func(path string) (int, hsmclient.HealthReport) {
		resp, err := http.Get(server.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var report hsmclient.HealthReport
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&report))
		return resp.StatusCode, report
	}

	code, report := get("/readyz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok", report.Status)
	require.Len(t, report.Clusters, 2)
	assert.Equal(t, "primary", report.Clusters[0].Name)
	assert.Positive(t, report.Clusters[0].ProbeLatencyMS)

	require.NoError(t, primary.SetMode(faultp11.ModeDown))
	_, err := client.Random(context.Background(), 8) // discovers the outage, served by DR
	require.NoError(t, err)
	code, report = get("/readyz")
	assert.Equal(t, http.StatusOK, code, "ready while DR serves")
	assert.Equal(t, "degraded", report.Status)
	assert.Equal(t, hsmclient.StateDown, report.Clusters[0].State)
	assert.Contains(t, report.Clusters[0].LastError, "CKR_DEVICE_ERROR")

	require.NoError(t, dr.SetMode(faultp11.ModeDown))
	_, err = client.Random(context.Background(), 8)
	require.ErrorIs(t, err, hsmclient.ErrClusterUnavailable)
	code, report = get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "unavailable", report.Status)
	code, _ = get("/healthz")
	assert.Equal(t, http.StatusOK, code, "liveness does not depend on the HSMs")

	require.NoError(t, primary.SetMode(faultp11.ModeOK))
	require.Eventually(t, func() bool { return client.Health(context.Background()).Ready() }, 5*time.Second, 10*time.Millisecond)

	// The audit trail has state changes and failovers, and never a PIN.
	trail := logs.String()
	assert.Contains(t, trail, `"msg":"cluster state changed"`)
	assert.Contains(t, trail, `"msg":"failing over"`)
	assert.Contains(t, trail, `"msg":"cluster recovered"`)
	for _, c := range cfg.Clusters {
		pin, err := os.ReadFile(c.PINFile)
		require.NoError(t, err)
		assert.NotContains(t, trail, string(bytes.TrimSpace(pin)))
	}
}

func TestKeyManagementIsAudited(t *testing.T) {
	var logs syncBuffer
	tokCluster, _ := faultCluster(t, "primary", mustToken(t), 0)
	client := openClient(t, hsmclient.Config{Clusters: []hsmclient.ClusterConfig{tokCluster}, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	ctx := context.Background()
	_, err := client.GenerateKey(ctx, "audited", hsmclient.KeyAES256)
	require.NoError(t, err)
	require.NoError(t, client.DeleteKey(ctx, "audited"))
	assert.Contains(t, logs.String(), `"msg":"key generated","label":"audited","type":"aes-256"`)
	assert.Contains(t, logs.String(), `"msg":"key deleted","label":"audited"`)
}

// syncBuffer is a bytes.Buffer safe for the client's concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
