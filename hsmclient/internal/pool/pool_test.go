package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// counter opens numbered resources and records which were closed.
type counter struct {
	next   atomic.Int64
	mu     sync.Mutex
	closed []int64
	fail   error
}

func (c *counter) open(context.Context) (int64, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	return c.next.Add(1), nil
}

func (c *counter) close(v int64) {
	c.mu.Lock()
	c.closed = append(c.closed, v)
	c.mu.Unlock()
}

func TestReleaseReusesAndDiscardCloses(t *testing.T) {
	var c counter
	p := New(2, 2, c.open, c.close)
	l1, err := p.Acquire(context.Background())
	require.NoError(t, err)
	l1.Release()
	l2, err := p.Acquire(context.Background())
	require.NoError(t, err)
	assert.Equal(t, l1.Value, l2.Value, "an idle resource is reused")
	l2.Discard()
	assert.Equal(t, []int64{1}, c.closed)
	l3, err := p.Acquire(context.Background())
	require.NoError(t, err)
	assert.NotEqual(t, l1.Value, l3.Value, "a discarded resource is never handed out again")
	l3.Release()
	s := p.Stats()
	assert.Equal(t, Stats{MaxOpen: 2, Open: 1, Idle: 1, Opened: 2, Discarded: 1}, s)
}

func TestAcquireWhenExhaustedReturnsContextError(t *testing.T) {
	var c counter
	p := New(1, 1, c.open, c.close)
	held, err := p.Acquire(context.Background())
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = p.Acquire(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, int64(1), p.Stats().WaitCount)
	assert.Positive(t, p.Stats().WaitDuration)

	// A waiter gets the resource as soon as it is released.
	got := make(chan int64)
	go func() {
		l, err := p.Acquire(context.Background())
		if err == nil {
			got <- l.Value
			l.Release()
		}
	}()
	time.Sleep(5 * time.Millisecond)
	held.Release()
	assert.Equal(t, held.Value, <-got)
}

func TestBoundHoldsUnderConcurrency(t *testing.T) {
	var c counter
	const max = 4
	p := New(max, 2, c.open, c.close)
	var inUse, peak atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				l, err := p.Acquire(context.Background())
				if !assert.NoError(t, err) {
					return
				}
				n := inUse.Add(1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				inUse.Add(-1)
				l.Release()
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, peak.Load(), int64(max))
	s := p.Stats()
	assert.Equal(t, 0, s.InUse)
	assert.LessOrEqual(t, s.Idle, 2, "max idle is honoured")
	assert.Equal(t, s.Opened, s.Discarded+int64(s.Idle), "every resource opened is idle or closed")
}

func TestResetMakesInUseResourcesStale(t *testing.T) {
	var c counter
	p := New(2, 2, c.open, c.close)
	idle, _ := p.Acquire(context.Background())
	busy, _ := p.Acquire(context.Background())
	idle.Release()
	p.Reset()
	assert.Empty(t, c.closed, "Reset forgets idle resources without closing them")
	busy.Release()
	assert.Equal(t, []int64{busy.Value}, c.closed, "a resource from before Reset is closed on release")
	l, err := p.Acquire(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int64(3), l.Value, "a fresh resource after Reset")
}

func TestOpenFailureFreesTheSlot(t *testing.T) {
	c := counter{fail: errors.New("device error")}
	p := New(1, 1, c.open, c.close)
	for range 3 {
		_, err := p.Acquire(context.Background())
		require.ErrorIs(t, err, c.fail)
	}
	assert.Equal(t, 0, p.Stats().InUse)
}

func TestCloseRefusesNewAcquires(t *testing.T) {
	var c counter
	p := New(2, 2, c.open, c.close)
	l, _ := p.Acquire(context.Background())
	held, _ := p.Acquire(context.Background())
	l.Release()
	p.Close()
	assert.Equal(t, []int64{l.Value}, c.closed)
	_, err := p.Acquire(context.Background())
	require.ErrorIs(t, err, ErrClosed)
	held.Release()
	assert.Equal(t, []int64{l.Value, held.Value}, c.closed)
}

func BenchmarkAcquireRelease(b *testing.B) {
	var c counter
	p := New(64, 64, c.open, c.close)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := p.Acquire(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			l.Release()
		}
	})
}

func TestResetReleasesTheBoundHeldByStuckLeases(t *testing.T) {
	var c counter
	p := New(1, 1, c.open, c.close)
	stuck, err := p.Acquire(context.Background())
	require.NoError(t, err)
	p.Reset()
	assert.Equal(t, 1, p.Stats().Stale)
	fresh, err := p.Acquire(ctxWithin(t, time.Second))
	require.NoError(t, err, "a lease stuck from before Reset does not count against the bound")
	fresh.Release()
	stuck.Release()
	s := p.Stats()
	assert.Equal(t, 0, s.Stale)
	assert.Equal(t, 0, s.InUse)
	assert.Equal(t, 1, s.Idle)
}

func ctxWithin(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
