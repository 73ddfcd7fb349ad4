package hsmclient

import "time"

// State is a cluster's health as the client sees it.
type State string

// Cluster states.
const (
	// StateUp: the cluster takes traffic.
	StateUp State = "up"
	// StateDegraded: the cluster takes traffic but its most recent calls failed
	// (fewer than FailureThreshold in a row).
	StateDegraded State = "degraded"
	// StateDown: the circuit breaker is open; only background probes reach the
	// cluster until RecoveryProbes of them pass in a row.
	StateDown State = "down"
)

// Operation results reported to an Observer.
const (
	ResultOK          = "ok"           // the operation succeeded
	ResultCallerError = "caller_error" // bad input, unknown key, wrong key type: not the cluster's fault
	ResultError       = "error"        // the cluster failed, timed out or refused the login
)

// Observer receives events from a Client, for metrics. Implementations must be
// safe for concurrent use and must not block.
type Observer interface {
	// OperationDone reports one attempt of an operation on one cluster.
	OperationDone(cluster, op, result string, latency time.Duration)
	// StateChanged reports a cluster moving between states.
	StateChanged(cluster string, from, to State)
	// FailedOver reports an operation moving from one cluster to the next.
	FailedOver(from, to, op string)
	// Recovered reports a cluster that came back after being down.
	Recovered(cluster string)
}
