// Package loadgen drives an operation under load and measures it: a closed
// loop (N workers, each starting its next operation as soon as the previous
// one ends) or an open loop (operations arrive at a fixed rate whatever the
// target does, at most N in flight), plus the "run at P% of capacity" mode
// that first measures capacity with a closed loop.
//
// Open-loop latency is measured from each operation's scheduled start, not
// from when a worker got round to it, so a target that stalls is charged for
// every request that arrived during the stall (no coordinated omission).
// Requests that were due before the end of the run but never started are
// reported as Missed.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Op is one operation. It returns nil on success. It is called from several
// goroutines at once.
type Op func(ctx context.Context) error

// Config describes a run.
type Config struct {
	// Concurrency is the number of workers: the closed loop's parallelism, and
	// the most operations in flight in the open loop. Default 1.
	Concurrency int
	// Duration of the measured run (required).
	Duration time.Duration
	// Rate, in operations per second, selects the open loop. Zero means
	// closed loop, unless LoadPercent is set.
	Rate float64
	// LoadPercent (0 < P <= 100, or more to overload) first measures capacity
	// with a closed loop of Concurrency workers for CalibrationDuration, then
	// runs the open loop at P% of it. Exclusive with Rate.
	LoadPercent float64
	// CalibrationDuration is how long capacity is measured (default 3s).
	CalibrationDuration time.Duration
	// Warmup runs a closed loop for this long before anything is measured,
	// so that pools fill and caches warm (default 0; calibration also warms).
	Warmup time.Duration
	// Progress, if set, is called every ProgressInterval (default 1s) from one
	// goroutine, and once more at the end of each phase.
	Progress         func(Progress)
	ProgressInterval time.Duration
	// Counts, if set, returns cumulative per-key counters (for example
	// operations per cluster); the result reports their increase over the
	// measured run.
	Counts func() map[string]int64
}

// Phase names a part of a run.
type Phase string

// Phases.
const (
	PhaseWarmup    Phase = "warmup"
	PhaseCalibrate Phase = "calibrate"
	PhaseRun       Phase = "run"
)

// Progress is a live snapshot of the current phase.
type Progress struct {
	Phase   Phase
	Elapsed time.Duration // since the phase started
	Ops     int64         // operations finished in this phase
	Errors  int64         // of which failed
	// Rate is the operations per second finished since the previous report.
	Rate float64
	// Done is set on the last report of the phase.
	Done bool
}

// Result is the outcome of the measured run.
type Result struct {
	Mode        string  // "closed" or "open"
	Concurrency int     // workers
	TargetRate  float64 // open loop: the arrival rate asked for (ops/s)
	Capacity    float64 // LoadPercent: the closed-loop rate measured first (ops/s)
	// Elapsed is the wall time of the measured run, until the last operation ended.
	Elapsed time.Duration
	// Ops counts finished operations, successful or not; Errors those that
	// failed. Missed counts open-loop requests due before the end that had
	// not started Grace after it because every worker was busy.
	Ops, Errors, Missed int64
	// OpsPerSec is Ops / Elapsed.
	OpsPerSec float64
	// Latency of every finished operation (failed ones included), from its
	// scheduled start in the open loop.
	Latency Percentiles
	Mean    time.Duration
	// FirstError is the first error seen, for diagnosis.
	FirstError error
	// Counts is the increase of Config.Counts over the measured run.
	Counts map[string]int64
}

// Run executes the configured load. It returns early, with what was measured
// so far and ctx's error, when ctx ends.
func Run(ctx context.Context, cfg Config, op Op) (Result, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.Duration <= 0 {
		return Result{}, errors.New("loadgen: duration must be positive")
	}
	if cfg.Rate < 0 || cfg.LoadPercent < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) {
		return Result{}, errors.New("loadgen: rate and load must not be negative")
	}
	if cfg.Rate > 0 && cfg.LoadPercent > 0 {
		return Result{}, errors.New("loadgen: set either a rate or a load percentage, not both")
	}
	if cfg.CalibrationDuration <= 0 {
		cfg.CalibrationDuration = 3 * time.Second
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = time.Second
	}

	if cfg.Warmup > 0 {
		if _, err := phase(ctx, cfg, PhaseWarmup, cfg.Warmup, 0, op); err != nil {
			return Result{}, err
		}
	}
	rate := cfg.Rate
	var capacity float64
	if cfg.LoadPercent > 0 {
		cal, err := phase(ctx, cfg, PhaseCalibrate, cfg.CalibrationDuration, 0, op)
		if err != nil {
			return Result{}, err
		}
		if cal.Ops == 0 || cal.Errors == cal.Ops {
			return Result{}, fmt.Errorf("loadgen: calibration finished no successful operation: %v", cal.FirstError)
		}
		capacity = float64(cal.Ops-cal.Errors) / cal.Elapsed.Seconds()
		rate = capacity * cfg.LoadPercent / 100
	}

	before := snapshot(cfg.Counts)
	res, err := phase(ctx, cfg, PhaseRun, cfg.Duration, rate, op)
	res.Capacity = capacity
	if cfg.Counts != nil {
		after := snapshot(cfg.Counts)
		res.Counts = make(map[string]int64, len(after))
		for k, v := range after {
			res.Counts[k] = v - before[k]
		}
	}
	return res, err
}

func snapshot(f func() map[string]int64) map[string]int64 {
	if f == nil {
		return nil
	}
	return f()
}

// Schedule returns the scheduled start of open-loop request i (from 0) at
// rate operations per second, relative to the start of the run. Requests are
// evenly spaced; the time is computed from i, not accumulated, so it does
// not drift.
func Schedule(i int64, rate float64) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / rate)
}

// Due returns how many open-loop requests fall in [0, d) at rate: the
// requests the run must start.
func Due(d time.Duration, rate float64) int64 {
	n := int64(math.Ceil(d.Seconds() * rate))
	// Guard against rounding: request n-1 must start before d and request n not.
	for n > 0 && Schedule(n-1, rate) >= d {
		n--
	}
	for Schedule(n, rate) < d {
		n++
	}
	return n
}

// Grace is how long after the end of an open-loop run of length d a request
// that was due before the end may still start (10% of d, at least 100 ms and
// at most 5 s). Later ones are Missed.
func Grace(d time.Duration) time.Duration {
	return min(max(d/10, 100*time.Millisecond), 5*time.Second)
}

// counters are shared by the workers of one phase.
type counters struct {
	ops, errs atomic.Int64
	firstErr  atomic.Pointer[error]
}

func (c *counters) done(err error) {
	c.ops.Add(1)
	if err != nil {
		c.errs.Add(1)
		c.firstErr.CompareAndSwap(nil, &err)
	}
}

// phase runs one closed loop (rate 0) or open loop for d.
func phase(ctx context.Context, cfg Config, name Phase, d time.Duration, rate float64, op Op) (Result, error) {
	res := Result{Mode: "closed", Concurrency: cfg.Concurrency, TargetRate: rate}
	if rate > 0 {
		res.Mode = "open"
	}
	var c counters
	var next atomic.Int64 // open loop: index of the next request to claim
	hists := make([]*Histogram, cfg.Concurrency)
	start := time.Now()
	end := start.Add(d)

	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		reportProgress(cfg, name, start, &c, stopProgress)
	}()

	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		h := new(Histogram)
		hists[w] = h
		wg.Go(func() {
			if rate > 0 {
				openWorker(ctx, op, h, &c, &next, start, end, rate)
			} else {
				closedWorker(ctx, op, h, &c, end)
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	close(stopProgress)
	<-progressDone

	var all Histogram
	for _, h := range hists {
		all.Merge(h)
	}
	res.Ops, res.Errors = c.ops.Load(), c.errs.Load()
	if rate > 0 {
		// Every finished operation was due before the end; the rest of the
		// due requests never started.
		res.Missed = max(Due(d, rate)-res.Ops, 0)
	}
	if res.Elapsed > 0 {
		res.OpsPerSec = float64(res.Ops) / res.Elapsed.Seconds()
	}
	res.Latency = all.Percentiles()
	res.Mean = all.Mean()
	if p := c.firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	return res, ctx.Err()
}

// closedWorker runs op back to back until end.
func closedWorker(ctx context.Context, op Op, h *Histogram, c *counters, end time.Time) {
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		err := op(ctx)
		h.Record(time.Since(t0))
		c.done(err)
	}
}

// openWorker claims request indices in order, waits for each one's scheduled
// start, runs it and records its latency from that scheduled start. A worker
// that is late (every worker was busy when the request was due) runs it at
// once and is charged the delay. Requests due before end are all run unless
// end plus Grace has passed before any worker could start them.
func openWorker(ctx context.Context, op Op, h *Histogram, c *counters, next *atomic.Int64, start, end time.Time, rate float64) {
	grace := Grace(end.Sub(start))
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for ctx.Err() == nil {
		i := next.Add(1) - 1
		due := start.Add(Schedule(i, rate))
		if !due.Before(end) {
			return
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		} else if !time.Now().Before(end.Add(grace)) {
			// Due before the end, but no worker was free to start it in time.
			return
		}
		err := op(ctx)
		h.Record(time.Since(due))
		c.done(err)
	}
}

func reportProgress(cfg Config, name Phase, start time.Time, c *counters, stop <-chan struct{}) {
	if cfg.Progress == nil {
		return
	}
	tick := time.NewTicker(cfg.ProgressInterval)
	defer tick.Stop()
	lastOps, lastAt := int64(0), start
	report := func(done bool) {
		now := time.Now()
		ops := c.ops.Load()
		rate := 0.0
		if dt := now.Sub(lastAt).Seconds(); dt > 0 {
			rate = float64(ops-lastOps) / dt
		}
		if done {
			rate = float64(ops) / now.Sub(start).Seconds()
		}
		cfg.Progress(Progress{Phase: name, Elapsed: now.Sub(start), Ops: ops, Errors: c.errs.Load(), Rate: rate, Done: done})
		lastOps, lastAt = ops, now
	}
	for {
		select {
		case <-tick.C:
			report(false)
		case <-stop:
			report(true)
			return
		}
	}
}

// SortedKeys returns the keys of m in order, for stable output.
func SortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
