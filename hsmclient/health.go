package hsmclient

import (
	"context"
	"encoding/json"
	"net/http"
)

// ClusterHealth is one cluster's entry in a HealthReport.
type ClusterHealth struct {
	Name           string  `json:"name"`
	State          State   `json:"state"`
	LastError      string  `json:"last_error,omitempty"`
	ProbeLatencyMS float64 `json:"probe_latency_ms"`
	OpenSessions   int     `json:"open_sessions"`
	InUseSessions  int     `json:"in_use_sessions"`
}

// HealthReport is the client's view of every cluster.
type HealthReport struct {
	// Status is "ok" when every cluster is up, "degraded" when at least one
	// cluster can serve, and "unavailable" when none can.
	Status   string          `json:"status"`
	Clusters []ClusterHealth `json:"clusters"`
}

// Ready reports whether at least one cluster can serve operations.
func (r HealthReport) Ready() bool { return r.Status != "unavailable" }

// Health probes every cluster that is not down (a cheap call on a pooled
// session, which also measures latency) and reports all of them. Down
// clusters report their background prober's last result.
func (c *Client) Health(ctx context.Context) HealthReport {
	if c.closed.Load() {
		return HealthReport{Status: "unavailable", Clusters: []ClusterHealth{}}
	}
	report := HealthReport{Status: "ok"}
	usable := 0
	for _, cl := range c.clusters {
		if cl.usable() {
			if err := cl.probe(ctx); err != nil && ctx.Err() == nil {
				cl.recordFailure(err)
			}
		}
		cl.stateMu.Lock()
		h := ClusterHealth{Name: cl.name, State: cl.state, ProbeLatencyMS: float64(cl.probeLatency.Microseconds()) / 1000}
		if cl.lastErr != nil {
			h.LastError = cl.lastErr.Error()
		}
		cl.stateMu.Unlock()
		stats := cl.pool.Stats()
		h.OpenSessions, h.InUseSessions = stats.Open, stats.InUse
		if h.State != StateDown {
			usable++
		}
		if h.State != StateUp {
			report.Status = "degraded"
		}
		report.Clusters = append(report.Clusters, h)
	}
	if usable == 0 {
		report.Status = "unavailable"
	}
	return report
}

// HealthHandler serves /healthz (liveness: the process answers) and /readyz
// (readiness: 200 with the HealthReport when at least one cluster can serve,
// 503 otherwise), both as JSON.
func (c *Client) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		report := c.Health(r.Context())
		code := http.StatusOK
		if !report.Ready() {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, report)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
