// Package pool is a bounded pool of reusable resources (PKCS#11 sessions) in the
// spirit of database/sql: at most Max resources exist at once, Acquire waits for
// one with a context, idle resources are reused, and broken ones are discarded.
//
// A Pool is safe for concurrent use. It knows nothing about PKCS#11: the caller
// supplies functions that open and close a resource.
package pool

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned by Acquire after Close.
var ErrClosed = errors.New("pool closed")

// Stats describes a pool at one moment.
type Stats struct {
	MaxOpen      int           // the bound on open resources
	Open         int           // resources that exist: idle plus in use
	Idle         int           // open resources waiting to be reused
	InUse        int           // resources held by callers
	Stale        int           // resources still held from before the last Reset (e.g. calls stuck in a dead connection)
	WaitCount    int64         // acquisitions that had to wait for a free slot
	WaitDuration time.Duration // total time spent waiting
	Opened       int64         // resources opened since the pool started
	Discarded    int64         // resources closed because they were broken or stale
}

// Pool hands out resources of type T.
type Pool[T any] struct {
	open  func(ctx context.Context) (T, error)
	close func(T)

	mu           sync.Mutex
	slots        chan struct{} // one token per resource that may exist; replaced by Reset
	idle         []item[T]
	maxIdle      int
	generation   uint64
	closed       bool
	inUse        int // leases of the current generation
	stale        int // leases from before the last Reset, still out
	waitCount    int64
	waitDuration time.Duration
	opened       int64
	discarded    int64
}

type item[T any] struct {
	value T
	gen   uint64
}

// Lease is one acquired resource. Give it back with Release or Discard, exactly once.
type Lease[T any] struct {
	Value T
	gen   uint64
	slots chan struct{} // the slot set this lease counts against
	pool  *Pool[T]
}

// New returns a pool of at most max resources, keeping at most maxIdle of them idle.
// open is called with the acquiring caller's context; close must not block for long.
func New[T any](max, maxIdle int, open func(ctx context.Context) (T, error), close func(T)) *Pool[T] {
	if max < 1 {
		max = 1
	}
	if maxIdle < 1 || maxIdle > max {
		maxIdle = max
	}
	return &Pool[T]{open: open, close: close, slots: make(chan struct{}, max), maxIdle: maxIdle}
}

func (p *Pool[T]) currentSlots() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.slots
}

// Acquire returns an idle resource, or opens one while fewer than max exist, or
// waits until one is released. When ctx ends first it returns ctx's error.
func (p *Pool[T]) Acquire(ctx context.Context) (*Lease[T], error) {
	slots := p.currentSlots()
	select {
	case slots <- struct{}{}:
	default:
		start := time.Now()
		select {
		case slots <- struct{}{}:
			p.mu.Lock()
			p.waitCount++
			p.waitDuration += time.Since(start)
			p.mu.Unlock()
		case <-ctx.Done():
			p.mu.Lock()
			p.waitCount++
			p.waitDuration += time.Since(start)
			p.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-slots
		return nil, ErrClosed
	}
	p.inUse++
	if n := len(p.idle); n > 0 {
		it := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return &Lease[T]{Value: it.value, gen: it.gen, slots: slots, pool: p}, nil
	}
	gen := p.generation
	p.mu.Unlock()

	v, err := p.open(ctx)
	if err != nil {
		p.mu.Lock()
		p.returned(gen)
		p.mu.Unlock()
		<-slots
		return nil, err
	}
	p.mu.Lock()
	p.opened++
	p.mu.Unlock()
	return &Lease[T]{Value: v, gen: gen, slots: slots, pool: p}, nil
}

// Release returns a healthy resource for reuse. A resource from before the last
// Reset, or beyond the idle bound, is closed instead.
func (l *Lease[T]) Release() {
	p := l.pool
	p.mu.Lock()
	p.returned(l.gen)
	if !p.closed && l.gen == p.generation && len(p.idle) < p.maxIdle {
		p.idle = append(p.idle, item[T]{value: l.Value, gen: l.gen})
		p.mu.Unlock()
		<-l.slots
		return
	}
	p.discarded++
	p.mu.Unlock()
	p.close(l.Value)
	<-l.slots
}

// Discard closes a resource that must not be reused (broken, or left mid-operation).
func (l *Lease[T]) Discard() {
	p := l.pool
	p.mu.Lock()
	p.returned(l.gen)
	p.discarded++
	p.mu.Unlock()
	p.close(l.Value)
	<-l.slots
}

// Reset forgets every idle resource without closing it and marks resources now
// in use as stale, so they are closed when released. Use it after the
// underlying library was re-initialized and every old handle became invalid.
// Resources in use stop counting against the bound: a call stuck forever in
// a dead connection must not shrink the pool for good.
func (p *Pool[T]) Reset() {
	p.mu.Lock()
	p.generation++
	p.idle = nil
	p.slots = make(chan struct{}, cap(p.slots))
	p.stale += p.inUse
	p.inUse = 0
	p.mu.Unlock()
}

// returned accounts for a lease of generation gen coming back. Call with mu held.
func (p *Pool[T]) returned(gen uint64) {
	if gen == p.generation {
		p.inUse--
	} else {
		p.stale--
	}
}

// Close closes the idle resources and makes later Acquire calls fail.
// Resources still in use are closed when they are released.
func (p *Pool[T]) Close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.generation++
	p.mu.Unlock()
	for _, it := range idle {
		p.close(it.value)
	}
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool[T]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		MaxOpen:      cap(p.slots),
		Stale:        p.stale,
		Open:         p.inUse + len(p.idle),
		Idle:         len(p.idle),
		InUse:        p.inUse,
		WaitCount:    p.waitCount,
		WaitDuration: p.waitDuration,
		Opened:       p.opened,
		Discarded:    p.discarded,
	}
}
