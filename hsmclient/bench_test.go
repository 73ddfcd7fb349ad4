package hsmclient_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/personapass/hsm/hsmclient/internal/pool"
)

// BenchmarkPoolAcquireRelease measures the session pool's own cost: Acquire
// and Release of an idle resource, no PKCS#11 call, with 1, 8 and 64
// goroutines sharing a pool of 64 (every goroutine finds a free resource) and
// of 4 (most goroutines wait for one). The end-to-end comparison with raw
// PKCS#11 and crypto11 is in internal/benchcmp.
func BenchmarkPoolAcquireRelease(b *testing.B) {
	for _, size := range []int{64, 4} {
		for _, par := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("pool=%d/par=%d", size, par), func(b *testing.B) {
				var opened atomic.Int64
				p := pool.New(size, size,
					func(context.Context) (int, error) { return int(opened.Add(1)), nil },
					func(int) {})
				defer p.Close()
				ctx := context.Background()
				var next atomic.Int64
				var failed atomic.Pointer[error]
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				for range par {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							l, err := p.Acquire(ctx)
							if err != nil {
								failed.CompareAndSwap(nil, &err)
								return
							}
							l.Release()
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				if e := failed.Load(); e != nil {
					b.Fatal(*e)
				}
				if n := opened.Load(); n > int64(size) {
					b.Fatalf("opened %d resources, pool holds %d", n, size)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}
