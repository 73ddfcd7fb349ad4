package hsmclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/personapass/hsm/hsmclient/internal/pool"
)

// Client signs, encrypts and manages keys on one or more HSM clusters through
// PKCS#11. Create it with Open and share it: it is safe for concurrent use.
type Client struct {
	settings Config
	clusters []*cluster
	closed   atomic.Bool

	pubMu sync.RWMutex
	pubs  map[string]KeyInfo // public halves read once, by label

	genMu sync.Mutex // serializes key generation, so two callers cannot both take a label
}

// Open connects to every configured cluster. It fails on configuration
// mistakes (bad config, missing module, unknown token label) and when no
// cluster is usable; a cluster that is unreachable, or whose PIN is refused,
// starts down while the others serve.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	settings := cfg.withDefaults()
	c := &Client{settings: settings, pubs: map[string]KeyInfo{}}
	var failures []error
	for _, cc := range settings.Clusters {
		cl, err := openCluster(ctx, cc, settings)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.clusters = append(c.clusters, cl)
		if !cl.usable() {
			failures = append(failures, &OpError{Cluster: cl.name, Op: "open", Err: cl.lastError()})
		}
	}
	if len(failures) == len(c.clusters) {
		c.Close()
		return nil, fmt.Errorf("%w: %w", ErrClusterUnavailable, errorList(failures))
	}
	return c, nil
}

// Close stops background probes and closes every session and module reference.
// Operations still running finish first.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	for _, cl := range c.clusters {
		cl.shutdown()
	}
	return nil
}

// ClusterStats describes one cluster's session pool.
type ClusterStats struct {
	Cluster string
	State   State
	pool.Stats
}

// Stats returns each cluster's pool counters, in priority order.
func (c *Client) Stats() []ClusterStats {
	out := make([]ClusterStats, 0, len(c.clusters))
	for _, cl := range c.clusters {
		out = append(out, ClusterStats{Cluster: cl.name, State: cl.currentState(), Stats: cl.pool.Stats()})
	}
	return out
}

// Clusters returns the configured cluster names in priority order.
func (c *Client) Clusters() []string {
	names := make([]string, len(c.clusters))
	for i, cl := range c.clusters {
		names[i] = cl.name
	}
	return names
}

// operation describes one call the router runs.
type operation[T any] struct {
	name string
	// failover allows retrying on the next cluster. Key creation and deletion
	// must not fail over: the clusters share new keys only through backups.
	failover bool
	// cluster pins the operation to one cluster by name (empty: route by priority).
	cluster string
	// slow marks operations bounded by KeyGenerationTimeout instead of OperationTimeout.
	slow bool
	run  func(*cluster, *session) (T, error)
}

// run sends op to the highest-priority usable cluster, retrying throttled
// calls on the same cluster and cluster failures on the next one.
func run[T any](ctx context.Context, c *Client, op operation[T]) (T, error) {
	var zero T
	if c.closed.Load() {
		return zero, &OpError{Op: op.name, Err: ErrClosed}
	}
	if err := ctx.Err(); err != nil {
		return zero, &OpError{Op: op.name, Err: callerGaveUp(err)}
	}
	targets, err := c.targets(op.cluster, op.failover)
	if err != nil {
		return zero, &OpError{Cluster: op.cluster, Op: op.name, Err: err}
	}
	var errs []error
	for i, cl := range targets {
		if i > 0 {
			prev := targets[i-1].name
			cl.log.Warn("failing over", "from", prev, "op", op.name)
			if o := c.settings.Observer; o != nil {
				o.FailedOver(prev, cl.name, op.name)
			}
		}
		v, err := attempt(ctx, c, cl, op, i < len(targets)-1)
		if err == nil {
			return v, nil
		}
		opErr := &OpError{Cluster: cl.name, Op: op.name, Err: err}
		if ctx.Err() != nil || classify(err) == classCaller {
			return zero, opErr
		}
		errs = append(errs, opErr)
	}
	if !op.failover || op.cluster != "" {
		return zero, errs[0]
	}
	return zero, fmt.Errorf("%w: %w", ErrClusterUnavailable, errorList(errs))
}

// targets lists the clusters an operation may use, in the order to try them.
func (c *Client) targets(name string, failover bool) ([]*cluster, error) {
	if name != "" || !failover {
		cl := c.clusters[0]
		if name != "" {
			if cl = c.cluster(name); cl == nil {
				return nil, fmt.Errorf("%w: no cluster named %q (have %v)", ErrInvalidInput, name, c.Clusters())
			}
		}
		switch {
		case cl.usable():
		case name != "":
			return nil, fmt.Errorf("%w: cluster %q is down (%v)", ErrClusterUnavailable, cl.name, cl.lastError())
		default:
			return nil, fmt.Errorf("%w: cluster %q is down (%v); key management is not redirected to another cluster because clusters share new keys only through backups", ErrClusterUnavailable, cl.name, cl.lastError())
		}
		return []*cluster{cl}, nil
	}
	var up []*cluster
	for _, cl := range c.clusters {
		if cl.usable() {
			up = append(up, cl)
		}
	}
	if len(up) == 0 {
		return nil, fmt.Errorf("%w: every cluster is down", ErrClusterUnavailable)
	}
	return up, nil
}

func (c *Client) cluster(name string) *cluster {
	for _, cl := range c.clusters {
		if cl.name == name {
			return cl
		}
	}
	return nil
}

// attempt runs op on one cluster, retrying throttled calls with back-off and,
// once, a call whose pooled session the token had already closed.
// When another cluster could take over and the caller's deadline is shorter
// than the operation timeout, the attempt gets half the remaining time, so a
// hung cluster leaves time to fail over.
func attempt[T any](ctx context.Context, c *Client, cl *cluster, op operation[T], canFailOver bool) (T, error) {
	timeout := time.Duration(c.settings.OperationTimeout)
	if op.slow {
		timeout = time.Duration(c.settings.KeyGenerationTimeout)
	}
	if deadline, ok := ctx.Deadline(); ok && canFailOver {
		// Split the caller's time only when both halves are worth having: a
		// half shorter than a tenth of the operation timeout would time out a
		// healthy HSM and count against it.
		if half := time.Until(deadline) / 2; half >= timeout/10 {
			timeout = min(timeout, half)
		}
	}
	backoff := time.Duration(c.settings.Failover.BusyBackoff)
	for try := 0; ; try++ {
		start := time.Now()
		v, err := call(ctx, cl, timeout, func(s *session) (T, error) { return op.run(cl, s) })
		class := classify(err)
		c.observe(cl.name, op.name, err, class, time.Since(start))
		switch {
		case err == nil:
			cl.recordSuccess()
			return v, nil
		case ctx.Err() != nil || class == classCaller:
			return v, err
		case class == classAuth:
			cl.recordAuthFailure(err)
			return v, err
		case isSessionInvalid(err) && try == 0:
			continue // the stale session was discarded; a fresh one is opened
		case class == classBusy && try < c.settings.Failover.BusyRetries:
			if !sleep(ctx, backoff/2+rand.N(backoff/2+1)) {
				return v, ctx.Err()
			}
			backoff *= 2
			continue
		}
		cl.recordFailure(err)
		return v, err
	}
}

func (c *Client) observe(cluster, op string, err error, class errorClass, latency time.Duration) {
	o := c.settings.Observer
	if o == nil {
		return
	}
	result := ResultOK
	switch {
	case err == nil:
	case class == classCaller:
		result = ResultCallerError
	default:
		result = ResultError
	}
	o.OperationDone(cluster, op, result, latency)
}

// callerGaveUp wraps the caller's context error; a passed deadline is also ErrTimeout.
func callerGaveUp(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// sleep waits for d or until ctx ends, reporting whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
