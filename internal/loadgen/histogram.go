package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram records durations in logarithmic buckets, each power of two split
// into linear sub-buckets, as HdrHistogram does: values below 2^subBits ns are
// exact and every other value is kept within 1/2^(subBits-1) of itself
// (0.8% with subBits = 8), from 1 ns to 2^63 ns, in a fixed 60 KiB.
//
// A Histogram is not safe for concurrent use: give each worker its own and
// Merge them.
type Histogram struct {
	counts [numBuckets]uint64
	total  uint64
	min    uint64
	max    uint64
	sum    float64
}

const (
	subBits    = 8
	subCount   = 1 << subBits // linear buckets below 2^subBits, and sub-buckets per power of two
	halfCount  = subCount / 2
	numBuckets = subCount + (64-subBits)*halfCount
)

// bucketIndex maps a value to its bucket.
func bucketIndex(v uint64) int {
	if v < subCount {
		return int(v)
	}
	// v has bits.Len64(v) bits; keep its top subBits bits, which lie in
	// [halfCount, subCount), and count how many bits were dropped.
	shift := bits.Len64(v) - subBits
	top := int(v >> shift)
	return subCount + (shift-1)*halfCount + (top - halfCount)
}

// bucketBounds returns the smallest and largest value of bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	j := i - subCount
	shift := j/halfCount + 1
	top := uint64(j%halfCount + halfCount)
	lo = top << shift
	return lo, lo + (1 << shift) - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketIndex(v)]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += float64(v)
}

// Merge adds every value recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
	h.sum += o.sum
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest recorded value exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Min returns the smallest recorded value exactly.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Mean returns the average of the recorded values.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// Quantile returns the value below or at which a fraction q (0 to 1) of the
// recorded values lie: the nearest-rank value ceil(q*count), reported as the
// highest value of its bucket (so never below the true value, and at most
// 0.8% above it), clamped to the exact maximum; rank 1 is the exact minimum.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank <= 1 {
		return time.Duration(h.min)
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketBounds(i)
			return time.Duration(min(max(hi, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// Percentiles summarises a histogram the way hsmctl bench reports it.
type Percentiles struct {
	P50, P90, P99, P999, Max time.Duration
}

// Percentiles returns p50, p90, p99, p99.9 and the maximum.
func (h *Histogram) Percentiles() Percentiles {
	return Percentiles{
		P50:  h.Quantile(0.50),
		P90:  h.Quantile(0.90),
		P99:  h.Quantile(0.99),
		P999: h.Quantile(0.999),
		Max:  h.Max(),
	}
}
