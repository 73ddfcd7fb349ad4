// Package metrics exposes an hsmclient.Client to Prometheus: operation counts
// and latency histograms by cluster, operation and result, session-pool
// gauges, cluster state, failovers and recoveries. It lives apart from
// hsmclient so that the client itself carries no metrics dependency.
//
//	m := metrics.New()
//	cfg.Observer = m
//	client, err := hsmclient.Open(ctx, cfg)
//	...
//	m.Watch(client)
//	prometheus.MustRegister(m)
package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/personapass/hsm/hsmclient"
)

const namespace = "hsmclient"

// Collector is both the client's Observer and a prometheus.Collector.
type Collector struct {
	operations  *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	failovers   *prometheus.CounterVec
	recoveries  *prometheus.CounterVec
	transitions *prometheus.CounterVec
	client      atomic.Pointer[hsmclient.Client]

	poolOpen, poolIdle, poolInUse, poolMax, poolStale, state *prometheus.Desc
	waits, waitSeconds                                       *prometheus.Desc
}

// New returns a Collector. Pass it as Config.Observer, then call Watch with
// the opened client so pool gauges can be read at scrape time.
func New() *Collector {
	clusterLabel := []string{"cluster"}
	return &Collector{
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "operations_total",
			Help: "PKCS#11 operation attempts by cluster, operation and result (ok, caller_error, error).",
		}, []string{"cluster", "op", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "operation_duration_seconds",
			Help:    "Latency of operation attempts, including waiting for a session.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100µs to ~3.3s
		}, []string{"cluster", "op", "result"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "failovers_total",
			Help: "Operations moved from one cluster to the next.",
		}, []string{"from", "to", "op"}),
		recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "recoveries_total",
			Help: "Clusters brought back into rotation after being down.",
		}, clusterLabel),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "state_changes_total",
			Help: "Cluster state changes by target state.",
		}, []string{"cluster", "to"}),
		poolOpen:    desc("pool_open_sessions", "Sessions open in the pool (idle plus in use)."),
		poolIdle:    desc("pool_idle_sessions", "Idle sessions waiting for reuse."),
		poolInUse:   desc("pool_in_use_sessions", "Sessions held by running operations."),
		poolMax:     desc("pool_max_sessions", "The pool's bound on open sessions."),
		poolStale:   desc("pool_stale_sessions", "Sessions from before the last reconnect still held by calls that never returned."),
		waits:       desc("pool_waits_total", "Acquisitions that had to wait for a session."),
		waitSeconds: desc("pool_wait_seconds_total", "Total time spent waiting for a session."),
		state:       prometheus.NewDesc(namespace+"_cluster_state", "1 for the cluster's current state (up, degraded, down), 0 otherwise.", []string{"cluster", "state"}, nil),
	}
}

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, []string{"cluster"}, nil)
}

// Watch makes the collector report client's pools and cluster states.
func (c *Collector) Watch(client *hsmclient.Client) { c.client.Store(client) }

// OperationDone implements hsmclient.Observer.
func (c *Collector) OperationDone(cluster, op, result string, latency time.Duration) {
	c.operations.WithLabelValues(cluster, op, result).Inc()
	c.latency.WithLabelValues(cluster, op, result).Observe(latency.Seconds())
}

// StateChanged implements hsmclient.Observer.
func (c *Collector) StateChanged(cluster string, _, to hsmclient.State) {
	c.transitions.WithLabelValues(cluster, string(to)).Inc()
}

// FailedOver implements hsmclient.Observer.
func (c *Collector) FailedOver(from, to, op string) { c.failovers.WithLabelValues(from, to, op).Inc() }

// Recovered implements hsmclient.Observer.
func (c *Collector) Recovered(cluster string) { c.recoveries.WithLabelValues(cluster).Inc() }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.operations.Describe(ch)
	c.latency.Describe(ch)
	c.failovers.Describe(ch)
	c.recoveries.Describe(ch)
	c.transitions.Describe(ch)
	for _, d := range []*prometheus.Desc{c.poolOpen, c.poolIdle, c.poolInUse, c.poolMax, c.poolStale, c.waits, c.waitSeconds, c.state} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.operations.Collect(ch)
	c.latency.Collect(ch)
	c.failovers.Collect(ch)
	c.recoveries.Collect(ch)
	c.transitions.Collect(ch)
	client := c.client.Load()
	if client == nil {
		return
	}
	for _, s := range client.Stats() {
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, s.Cluster)
		}
		gauge(c.poolOpen, float64(s.Open))
		gauge(c.poolIdle, float64(s.Idle))
		gauge(c.poolInUse, float64(s.InUse))
		gauge(c.poolMax, float64(s.MaxOpen))
		gauge(c.poolStale, float64(s.Stale))
		ch <- prometheus.MustNewConstMetric(c.waits, prometheus.CounterValue, float64(s.WaitCount), s.Cluster)
		ch <- prometheus.MustNewConstMetric(c.waitSeconds, prometheus.CounterValue, s.WaitDuration.Seconds(), s.Cluster)
		for _, st := range []hsmclient.State{hsmclient.StateUp, hsmclient.StateDegraded, hsmclient.StateDown} {
			v := 0.0
			if s.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, s.Cluster, string(st))
		}
	}
}
