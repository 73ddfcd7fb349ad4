package hsmclient

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/miekg/pkcs11"
)

// The circuit breaker. A cluster is up until FailureThreshold consecutive
// cluster failures (device errors, timeouts, throttling that outlasted its
// retries) or a single failure that means the connection is gone; then it is
// down and a background prober takes over. The prober re-initializes the
// module when the connection was lost, and RecoveryProbes consecutive healthy
// probes bring the cluster back. A refused PIN takes the cluster down for good.

// usable reports whether the router may send traffic to the cluster.
func (c *cluster) usable() bool {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.state != StateDown
}

// setState changes state and tells the logger and observer. Call with stateMu held.
func (c *cluster) setState(to State) {
	from := c.state
	if from == to {
		return
	}
	c.state = to
	c.log.Info("cluster state changed", "from", string(from), "to", string(to))
	if o := c.settings.Observer; o != nil {
		o.StateChanged(c.name, from, to)
	}
}

// recordSuccess resets the failure count.
func (c *cluster) recordSuccess() {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.failures = 0
	if c.state == StateDegraded && !c.probing {
		c.setState(StateUp)
	}
}

// recordFailure counts a cluster failure and opens the breaker at the threshold.
func (c *cluster) recordFailure(err error) {
	if needsReinit(err) {
		c.markDown(err)
		return
	}
	c.stateMu.Lock()
	c.failures++
	c.lastErr = err
	tripped := c.failures >= c.settings.Failover.FailureThreshold
	if !tripped && c.state == StateUp {
		c.setState(StateDegraded)
	}
	c.stateMu.Unlock()
	if tripped {
		c.markDown(err)
	}
}

// recordAuthFailure takes the cluster down without probing: only an operator can fix a PIN.
func (c *cluster) recordAuthFailure(err error) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.lastErr = err
	c.setState(StateDown)
}

// markDown opens the breaker and starts the background prober once.
func (c *cluster) markDown(err error) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	c.lastErr = err
	if c.state != StateDown {
		c.downSince = time.Now()
	}
	c.setState(StateDown)
	if c.probing {
		return
	}
	select {
	case <-c.stop:
		return
	default:
	}
	c.probing = true
	c.probeDone.Add(1)
	go c.probeLoop()
}

// probeLoop probes a down cluster with jittered exponential back-off until it
// passes RecoveryProbes probes in a row or the client closes.
func (c *cluster) probeLoop() {
	defer c.probeDone.Done()
	f := c.settings.Failover
	backoff := time.Duration(f.ProbeMinInterval)
	healthy := 0
	for {
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-c.stop:
			return
		case <-time.After(wait):
		}
		err := c.probe(context.Background())
		c.stateMu.Lock()
		if err != nil {
			c.log.Debug("recovery probe failed", "error", err, "next_in", backoff)
			c.lastErr = err
			healthy = 0
			backoff = min(2*backoff, time.Duration(f.ProbeMaxInterval))
			c.stateMu.Unlock()
			continue
		}
		healthy++
		c.lastErr = nil
		if healthy < f.RecoveryProbes {
			c.stateMu.Unlock()
			backoff = time.Duration(f.ProbeMinInterval)
			continue
		}
		c.failures = 0
		c.probing = false
		c.setState(StateUp)
		c.stateMu.Unlock()
		c.log.Info("cluster recovered")
		if o := c.settings.Observer; o != nil {
			o.Recovered(c.name)
		}
		return
	}
}

// probe checks the cluster with a cheap call on a pooled session, first
// re-initializing the module when the last error says the connection is gone.
// It waits for calls still running in the module to return first (a frozen
// server resumes them), unless they have outlived every deadline: a library
// can leave a call stuck forever after its connection died (p11-kit 0.24
// does), and only re-initializing wakes it. The call's latency is recorded
// for health reports.
func (c *cluster) probe(ctx context.Context) error {
	c.stateMu.Lock()
	lastErr, downSince := c.lastErr, c.downSince
	c.stateMu.Unlock()
	if classify(lastErr) == classAuth {
		return lastErr
	}
	if needsReinit(lastErr) && (c.inflight.Load() == 0 || c.stuckSince(downSince)) {
		if err := c.reconnect(); err != nil {
			return err
		}
	}
	start := time.Now()
	_, err := call(ctx, c, time.Duration(c.settings.OperationTimeout), func(s *session) (struct{}, error) {
		info, err := s.ctx.GetSessionInfo(s.h)
		if err == nil && info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
			c.dropLogin() // the token forgot the login (e.g. it restarted)
			return struct{}{}, pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)
		}
		return struct{}{}, err
	})
	c.stateMu.Lock()
	c.probeLatency = time.Since(start)
	c.stateMu.Unlock()
	return err
}

// stuckSince reports whether calls still running since the cluster went down
// have outlived any deadline they could have had.
func (c *cluster) stuckSince(downSince time.Time) bool {
	return time.Since(downSince) > 2*time.Duration(c.settings.OperationTimeout)
}

// reconnect finalizes and initializes the module again, then finds the token,
// drops every session and handle of the old connection, and forgets the login.
func (c *cluster) reconnect() error {
	if err := c.mod.Reinit(c.mod.Generation()); err != nil {
		return err
	}
	c.pool.Reset()
	c.handles.Clear()
	c.dropLogin()
	if _, err := c.resolveSlot(); err != nil {
		return err
	}
	c.log.Info("module re-initialized", "module", c.mod.Path())
	return nil
}

// shutdown stops the prober, waits (bounded) for calls still running in the
// module, and closes the pool and the module reference. Finalizing a library
// under a running call crashes the process, so when calls are still stuck
// after the wait, the module is left initialized instead.
func (c *cluster) shutdown() {
	c.stateMu.Lock()
	close(c.stop)
	c.stateMu.Unlock()
	c.probeDone.Wait()
	deadline := time.Now().Add(2 * time.Duration(c.settings.OperationTimeout))
	for c.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c.pool.Close()
	if n := c.inflight.Load(); n > 0 {
		c.log.Warn("calls still running at close; leaving the module initialized", "calls", n)
		return
	}
	c.dropLogin()
	c.mod.Release()
}

// currentState returns the breaker state.
func (c *cluster) currentState() State {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.state
}

// lastError returns the most recent cluster failure, or nil.
func (c *cluster) lastError() error {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.lastErr
}
