package loadgen

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBucketBoundsContainValue(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []uint64{0, 1, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1, 1 << 63, ^uint64(0)}
	for range 10000 {
		values = append(values, r.Uint64()>>r.IntN(64))
	}
	prev := -1
	for _, v := range values {
		i := bucketIndex(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("value %d: bucket %d out of range", v, i)
		}
		lo, hi := bucketBounds(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if v < subCount && lo != hi {
			t.Fatalf("small value %d not exact: [%d, %d]", v, lo, hi)
		}
		if float64(hi-lo) > float64(lo)/128+1 {
			t.Fatalf("bucket [%d, %d] wider than 1/128 of its value", lo, hi)
		}
	}
	// Buckets tile the number line: each starts right after the previous one.
	for i := 1; i < numBuckets; i++ {
		_, prevHi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
		prev = i
	}
	if _, hi := bucketBounds(prev); hi != ^uint64(0) {
		t.Fatalf("last bucket ends at %d", hi)
	}
}

func TestQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Max() != 0 {
		t.Fatal("empty histogram should report zero")
	}
	// 1..10000 microseconds, shuffled.
	r := rand.New(rand.NewPCG(3, 4))
	for _, i := range r.Perm(10000) {
		h.Record(time.Duration(i+1) * time.Microsecond)
	}
	check := func(name string, got, want time.Duration) {
		t.Helper()
		// Never below the true nearest-rank value, at most 1/128 above it.
		if got < want || float64(got-want) > float64(want)/128 {
			t.Errorf("%s = %v, want %v (+0.8%%)", name, got, want)
		}
	}
	p := h.Percentiles()
	check("p50", p.P50, 5000*time.Microsecond)
	check("p90", p.P90, 9000*time.Microsecond)
	check("p99", p.P99, 9900*time.Microsecond)
	check("p99.9", p.P999, 9990*time.Microsecond)
	if p.Max != 10*time.Millisecond || h.Min() != time.Microsecond || h.Count() != 10000 {
		t.Errorf("max %v min %v count %d", p.Max, h.Min(), h.Count())
	}
	if m := h.Mean(); m != 5000500*time.Nanosecond {
		t.Errorf("mean %v", m)
	}
	if h.Quantile(0) != time.Microsecond || h.Quantile(1) != 10*time.Millisecond {
		t.Errorf("q0 %v q1 %v", h.Quantile(0), h.Quantile(1))
	}

	// Small values are exact, and quantiles never exceed the maximum.
	var s Histogram
	for _, v := range []time.Duration{5, 7, 7, 9, -3} {
		s.Record(v)
	}
	if s.Quantile(0.5) != 7 || s.Quantile(0.2) != 0 || s.Max() != 9 || s.Quantile(0.999) != 9 {
		t.Errorf("small: p50 %v p20 %v max %v", s.Quantile(0.5), s.Quantile(0.2), s.Max())
	}
	var one Histogram
	one.Record(1234567 * time.Nanosecond)
	if one.Quantile(0.5) != 1234567 {
		t.Errorf("single value reported as %v", one.Quantile(0.5))
	}
}

func TestMerge(t *testing.T) {
	var a, b, all Histogram
	for i := range 1000 {
		d := time.Duration(i*i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(&Histogram{})
	if m.Percentiles() != all.Percentiles() || m.Min() != all.Min() || m.Count() != all.Count() || m.Mean() != all.Mean() {
		t.Errorf("merged %+v, want %+v", m.Percentiles(), all.Percentiles())
	}
}

func TestSchedule(t *testing.T) {
	if got := Schedule(1_000_000, 1000); got != 1000*time.Second {
		t.Errorf("request 1e6 at 1000/s scheduled at %v: the schedule drifts", got)
	}
	if got := Schedule(3, 3); got != time.Second {
		t.Errorf("request 3 at 3/s at %v", got)
	}
	for i := int64(1); i < 10000; i++ {
		if Schedule(i, 7919) <= Schedule(i-1, 7919) {
			t.Fatalf("schedule not increasing at %d", i)
		}
	}
	for _, c := range []struct {
		d    time.Duration
		rate float64
		want int64
	}{
		{time.Second, 1000, 1000},
		{time.Second, 3, 3},     // 0, 1/3, 2/3
		{time.Second, 0.5, 1},   // 0
		{time.Second + 1, 2, 3}, // 0, 0.5, 1.0
		{10 * time.Second, 333.3, 3333},
		{time.Millisecond, 1e9, 1e6},
	} {
		if got := Due(c.d, c.rate); got != c.want {
			t.Errorf("Due(%v, %v) = %d, want %d", c.d, c.rate, got, c.want)
		}
	}
}

func TestValidation(t *testing.T) {
	op := func(context.Context) error { return nil }
	for _, cfg := range []Config{
		{},
		{Duration: time.Second, Rate: -1},
		{Duration: time.Second, Rate: 10, LoadPercent: 50},
	} {
		if _, err := Run(context.Background(), cfg, op); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

func TestClosedLoop(t *testing.T) {
	var calls, cluster atomic.Int64
	errBoom := errors.New("boom")
	op := func(context.Context) error {
		n := calls.Add(1)
		cluster.Add(1)
		if n%10 == 0 {
			return errBoom
		}
		return nil
	}
	var mu sync.Mutex
	var reports []Progress
	res, err := Run(context.Background(), Config{
		Concurrency:      3,
		Duration:         100 * time.Millisecond,
		Warmup:           20 * time.Millisecond,
		ProgressInterval: 30 * time.Millisecond,
		Progress: func(p Progress) {
			mu.Lock()
			reports = append(reports, p)
			mu.Unlock()
		},
		Counts: func() map[string]int64 { return map[string]int64{"a": cluster.Load(), "b": 0} },
	}, op)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "closed" || res.Concurrency != 3 || res.Missed != 0 {
		t.Errorf("result %+v", res)
	}
	if res.Ops == 0 || res.Errors == 0 || res.Errors > res.Ops/5 {
		t.Errorf("ops %d errors %d", res.Ops, res.Errors)
	}
	if !errors.Is(res.FirstError, errBoom) {
		t.Errorf("first error %v", res.FirstError)
	}
	// The warm-up's calls are not counted.
	if res.Ops >= calls.Load() || res.Counts["a"] != res.Ops || res.Counts["b"] != 0 {
		t.Errorf("ops %d of %d calls, counts %v", res.Ops, calls.Load(), res.Counts)
	}
	if res.Elapsed < 100*time.Millisecond || res.OpsPerSec <= 0 {
		t.Errorf("elapsed %v ops/s %v", res.Elapsed, res.OpsPerSec)
	}
	mu.Lock()
	defer mu.Unlock()
	var doneWarmup, doneRun bool
	for _, p := range reports {
		if p.Done && p.Phase == PhaseWarmup {
			doneWarmup = true
		}
		if p.Done && p.Phase == PhaseRun {
			doneRun = p.Ops == res.Ops && p.Errors == res.Errors
		}
	}
	if !doneWarmup || !doneRun {
		t.Errorf("progress reports %+v", reports)
	}
}

func TestOpenLoopRunsEveryDueRequest(t *testing.T) {
	var calls atomic.Int64
	res, err := Run(context.Background(), Config{Concurrency: 4, Duration: 200 * time.Millisecond, Rate: 2000},
		func(context.Context) error { calls.Add(1); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "open" || res.TargetRate != 2000 || res.Ops != 400 || calls.Load() != 400 || res.Missed != 0 || res.Errors != 0 {
		t.Errorf("result %+v, %d calls", res, calls.Load())
	}
	// Open-loop arrivals cannot finish much faster than scheduled.
	if res.Elapsed < 199*time.Millisecond {
		t.Errorf("400 requests at 2000/s took %v", res.Elapsed)
	}
}

// TestOpenLoopNoCoordinatedOmission stalls the first request for 50 ms with one
// worker: the ~50 requests that were due during the stall must be charged for
// the time they waited, not just the one slow call.
func TestOpenLoopNoCoordinatedOmission(t *testing.T) {
	var calls atomic.Int64
	res, err := Run(context.Background(), Config{Concurrency: 1, Duration: 200 * time.Millisecond, Rate: 1000},
		func(context.Context) error {
			if calls.Add(1) == 1 {
				time.Sleep(50 * time.Millisecond)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 200 || res.Missed != 0 {
		t.Fatalf("ops %d missed %d, want all 200 due requests run", res.Ops, res.Missed)
	}
	if res.Latency.Max < 50*time.Millisecond {
		t.Errorf("max %v, want the 50 ms stall", res.Latency.Max)
	}
	// Requests due at 0..40 ms waited at least 10 ms: over 20% of the 200.
	if res.Latency.P90 < 10*time.Millisecond {
		t.Errorf("p90 %v: requests queued behind the stall were not charged for it", res.Latency.P90)
	}
}

func TestOpenLoopSaturatedCountsMissed(t *testing.T) {
	res, err := Run(context.Background(), Config{Concurrency: 1, Duration: 100 * time.Millisecond, Rate: 1000},
		func(context.Context) error { time.Sleep(10 * time.Millisecond); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops+res.Missed != 100 || res.Missed < 50 || res.Ops == 0 {
		t.Errorf("ops %d missed %d, want them to add up to the 100 due", res.Ops, res.Missed)
	}
}

func TestLoadPercent(t *testing.T) {
	var phases sync.Map
	res, err := Run(context.Background(), Config{
		Concurrency:         2,
		Duration:            100 * time.Millisecond,
		LoadPercent:         50,
		CalibrationDuration: 100 * time.Millisecond,
		Progress:            func(p Progress) { phases.Store(p.Phase, true) },
	}, func(context.Context) error { time.Sleep(time.Millisecond); return nil })
	if err != nil {
		t.Fatal(err)
	}
	// Two workers sleeping 1 ms: at most ~2000/s.
	if res.Capacity <= 100 || res.Capacity > 2100 {
		t.Errorf("capacity %v", res.Capacity)
	}
	if res.Mode != "open" || math.Abs(res.TargetRate-res.Capacity/2) > 1e-9*res.Capacity {
		t.Errorf("mode %s target %v capacity %v", res.Mode, res.TargetRate, res.Capacity)
	}
	if want := Due(100*time.Millisecond, res.TargetRate); res.Ops+res.Missed != want {
		t.Errorf("ops %d + missed %d, want %d due", res.Ops, res.Missed, want)
	}
	if _, ok := phases.Load(PhaseCalibrate); !ok {
		t.Error("no calibration progress")
	}
}

func TestLoadPercentFailsWithoutSuccess(t *testing.T) {
	_, err := Run(context.Background(), Config{Duration: time.Second, LoadPercent: 80, CalibrationDuration: 20 * time.Millisecond},
		func(context.Context) error { return errors.New("down") })
	if err == nil {
		t.Fatal("calibration with only failures should fail")
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, Config{Concurrency: 2, Duration: time.Hour, Rate: 10},
		func(context.Context) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
}
