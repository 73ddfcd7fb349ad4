package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/personapass/hsm/hsmclient"
	"github.com/personapass/hsm/internal/loadgen"
)

func init() { extraCommands = append(extraCommands, newBenchCmd) }

// benchOps are the operations hsmctl bench can drive.
var benchOps = []string{"sign", "verify", "encrypt", "decrypt", "random"}

// benchOptions are the flags of hsmctl bench.
type benchOptions struct {
	label, op, alg string
	concurrency    int
	sessions       int
	duration       time.Duration
	warmup         time.Duration
	calibrate      time.Duration
	rate           float64
	load           string
	size           int
	asJSON         bool
}

func newBenchCmd(a *app) *cobra.Command {
	var o benchOptions
	c := &cobra.Command{
		Use:   "bench",
		Short: "Load-test an operation and report throughput and latency percentiles",
		Long: `bench runs one operation against the configured clusters under load and reports
operations per second, errors and latency percentiles (p50, p90, p99, p99.9, max),
and how many operations each cluster served.

Load models:
  closed loop (default)  --concurrency workers, each starting its next operation
                         as soon as the previous one ends: measures capacity.
  --rate R               open loop: R operations per second arrive on a fixed
                         schedule, at most --concurrency in flight. Latency is
                         measured from each operation's scheduled start, so time
                         spent queued behind a slow HSM counts (no coordinated
                         omission). Requests that could not start by the end of
                         the run (plus a grace period) count as errors.
  --load P%              measure capacity with a closed loop for --calibrate,
                         then run the open loop at P% of it (the load test of
                         "operations under 100 ms at 80% of capacity").

Operations: sign (SignMessage with --alg, default the key's usual algorithm),
verify (software verification of a signature made once by the HSM: it measures
this machine, not the HSM), encrypt and decrypt (AES-256-GCM, --size bytes of
plaintext), random (--size bytes from the HSM's generator; no --label).

Progress goes to stderr every second; the summary goes to stdout, as a table or,
with --json, as {"op","concurrency","duration_s","ops","errors","ops_per_s",
"latency_ms":{"p50","p90","p99","p999","max"},"clusters":{"<name>":ops}}, where
errors includes requests that were never started. Exit code 1 when any
operation failed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.Context(), a, o) },
	}
	f := c.Flags()
	f.StringVar(&o.label, "label", "", "key `LABEL` (not for --op random)")
	f.StringVar(&o.op, "op", "sign", "operation: "+strings.Join(benchOps, "|"))
	f.StringVar(&o.alg, "alg", "", "signature algorithm for sign and verify: "+algNames()+" (default: the key's usual one)")
	f.IntVar(&o.concurrency, "concurrency", 8, "workers (closed loop) or most operations in flight (open loop)")
	f.IntVar(&o.sessions, "sessions", 0, "override the configuration's pool.max_sessions (0: keep it)")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "length of the measured run")
	f.DurationVar(&o.warmup, "warmup", time.Second, "closed-loop warm-up before measuring (fills the session pool)")
	f.DurationVar(&o.calibrate, "calibrate", 3*time.Second, "with --load: how long capacity is measured first")
	f.Float64Var(&o.rate, "rate", 0, "open loop at this many operations per `second`")
	f.StringVar(&o.load, "load", "", "open loop at this share of measured capacity, e.g. `80%`")
	f.IntVar(&o.size, "size", 0, "message, plaintext or random size in `BYTES` (default 32; 1024 for encrypt/decrypt)")
	f.BoolVar(&o.asJSON, "json", false, "print the summary as JSON")
	return c
}

// parseLoad reads "80%" or "80" as 80.
func parseLoad(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || v <= 0 || v > 1000 || math.IsNaN(v) {
		return 0, fmt.Errorf("--load %q: want a percentage of capacity such as 80%%", s)
	}
	return v, nil
}

// maxBenchConcurrency bounds --concurrency: far beyond what an HSM cluster
// serves in parallel, far below what exhausts memory.
const maxBenchConcurrency = 4096

func (o *benchOptions) validate() (loadPercent float64, err error) {
	known := false
	for _, op := range benchOps {
		known = known || o.op == op
	}
	switch {
	case !known:
		return 0, fmt.Errorf("--op %q: want one of %s", o.op, strings.Join(benchOps, ", "))
	case o.op != "random" && o.label == "":
		return 0, fmt.Errorf("--label is required for --op %s", o.op)
	case o.op == "random" && o.label != "":
		return 0, errors.New("--op random takes no --label")
	case o.alg != "" && o.op != "sign" && o.op != "verify":
		return 0, fmt.Errorf("--alg applies to sign and verify, not %s", o.op)
	case o.concurrency < 1 || o.concurrency > maxBenchConcurrency:
		// Each worker or in-flight operation holds a goroutine and buffers;
		// millions of them exhaust memory long before any HSM saturates.
		return 0, fmt.Errorf("--concurrency %d: want 1 to %d", o.concurrency, maxBenchConcurrency)
	case o.sessions < 0:
		return 0, errors.New("--sessions must not be negative")
	case o.duration <= 0:
		return 0, errors.New("--duration must be positive")
	case o.warmup < 0 || o.calibrate <= 0:
		return 0, errors.New("--warmup must not be negative and --calibrate must be positive")
	case o.rate < 0 || math.IsNaN(o.rate) || math.IsInf(o.rate, 0):
		return 0, errors.New("--rate must be a positive number of operations per second")
	case o.rate > 0 && o.load != "":
		return 0, errors.New("--rate and --load are exclusive")
	}
	if o.load != "" {
		if loadPercent, err = parseLoad(o.load); err != nil {
			return 0, err
		}
	}
	if o.size == 0 {
		o.size = 32
		if o.op == "encrypt" || o.op == "decrypt" {
			o.size = 1024
		}
	}
	maxSize := 16 * 1024
	if o.op == "random" {
		maxSize = 65536
	}
	if o.size < 1 || o.size > maxSize {
		return 0, fmt.Errorf("--size %d: want 1 to %d bytes for %s", o.size, maxSize, o.op)
	}
	return loadPercent, nil
}

// clusterCounter is an hsmclient.Observer counting successful operations per cluster.
type clusterCounter struct {
	counts sync.Map // cluster name -> *atomic.Int64
}

func (c *clusterCounter) counter(name string) *atomic.Int64 {
	if v, ok := c.counts.Load(name); ok {
		return v.(*atomic.Int64)
	}
	v, _ := c.counts.LoadOrStore(name, new(atomic.Int64))
	return v.(*atomic.Int64)
}

func (c *clusterCounter) OperationDone(cluster, _, result string, _ time.Duration) {
	if result == hsmclient.ResultOK {
		c.counter(cluster).Add(1)
	}
}
func (c *clusterCounter) StateChanged(string, hsmclient.State, hsmclient.State) {}
func (c *clusterCounter) FailedOver(string, string, string)                     {}
func (c *clusterCounter) Recovered(string)                                      {}

func (c *clusterCounter) snapshot() map[string]int64 {
	out := map[string]int64{}
	c.counts.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// benchTarget is the prepared operation and how to describe it.
type benchTarget struct {
	op   loadgen.Op
	desc string
}

// prepareOp builds the operation, doing once what the loop must not repeat
// (key lookup, the signature to verify, the ciphertext to decrypt), and runs
// it once so that a wrong key or algorithm fails before the load starts.
func prepareOp(ctx context.Context, c *hsmclient.Client, o benchOptions) (benchTarget, error) {
	data := make([]byte, o.size)
	if _, err := rand.Read(data); err != nil {
		return benchTarget{}, err
	}
	var t benchTarget
	switch o.op {
	case "sign", "verify":
		key, err := c.KeyInfo(ctx, o.label)
		if err != nil {
			return t, err
		}
		alg, err := chooseAlgorithm(key, o.alg)
		if err != nil {
			return t, err
		}
		signer, err := c.Signer(ctx, o.label)
		if err != nil {
			return t, err
		}
		t.desc = fmt.Sprintf("%s (%s, key %q, %d-byte message)", o.op, alg, o.label, o.size)
		if o.op == "sign" {
			t.op = func(ctx context.Context) error { _, err := signer.SignMessage(ctx, alg, data); return err }
			break
		}
		sig, err := signer.SignMessage(ctx, alg, data)
		if err != nil {
			return t, err
		}
		pub := key.Public
		t.desc += ", in software"
		t.op = func(context.Context) error { return hsmclient.VerifyMessage(pub, alg, data, sig) }
	case "encrypt":
		t.desc = fmt.Sprintf("encrypt (AES-256-GCM, key %q, %d bytes)", o.label, o.size)
		t.op = func(ctx context.Context) error { _, err := c.Encrypt(ctx, o.label, data, nil); return err }
	case "decrypt":
		sealed, err := c.Encrypt(ctx, o.label, data, nil)
		if err != nil {
			return t, err
		}
		t.desc = fmt.Sprintf("decrypt (AES-256-GCM, key %q, %d bytes)", o.label, o.size)
		t.op = func(ctx context.Context) error { _, err := c.Decrypt(ctx, o.label, sealed, nil); return err }
	case "random":
		t.desc = fmt.Sprintf("random (%d bytes)", o.size)
		t.op = func(ctx context.Context) error { _, err := c.Random(ctx, o.size); return err }
	}
	if err := t.op(ctx); err != nil {
		return t, fmt.Errorf("%s: first operation failed, not starting the load: %w", o.op, err)
	}
	return t, nil
}

// benchJSON is the --json summary; the field order is the documented one.
type benchJSON struct {
	Op          string           `json:"op"`
	Concurrency int              `json:"concurrency"`
	DurationS   float64          `json:"duration_s"`
	Ops         int64            `json:"ops"`
	Errors      int64            `json:"errors"`
	OpsPerS     float64          `json:"ops_per_s"`
	LatencyMS   latencyJSON      `json:"latency_ms"`
	Clusters    map[string]int64 `json:"clusters"`
}

type latencyJSON struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func runBench(ctx context.Context, a *app, o benchOptions) error {
	loadPercent, err := o.validate()
	if err != nil {
		return err
	}
	cfg, path, err := a.loadConfig()
	if err != nil {
		return err
	}
	if o.sessions > 0 {
		cfg.Pool.MaxSessions = o.sessions
		if cfg.Pool.MaxIdle > o.sessions {
			cfg.Pool.MaxIdle = o.sessions
		}
	}
	counter := &clusterCounter{}
	cfg.Observer = counter
	c, err := hsmclient.Open(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	a.client, a.configPath = c, path // run closes it
	for _, name := range c.Clusters() {
		counter.counter(name)
	}

	target, err := prepareOp(ctx, c, o)
	if err != nil {
		return err
	}
	res, runErr := loadgen.Run(ctx, loadgen.Config{
		Concurrency:         o.concurrency,
		Duration:            o.duration,
		Rate:                o.rate,
		LoadPercent:         loadPercent,
		CalibrationDuration: o.calibrate,
		Warmup:              o.warmup,
		Progress:            func(p loadgen.Progress) { printProgress(a.stderr, p) },
		Counts:              counter.snapshot,
	}, target.op)
	if runErr != nil && res.Ops == 0 {
		return runErr
	}
	errs := res.Errors + res.Missed
	if o.asJSON {
		out := benchJSON{
			Op: o.op, Concurrency: o.concurrency, DurationS: math.Round(res.Elapsed.Seconds()*1e3) / 1e3,
			Ops: res.Ops, Errors: errs, OpsPerS: math.Round(res.OpsPerSec*10) / 10,
			LatencyMS: latencyJSON{ms(res.Latency.P50), ms(res.Latency.P90), ms(res.Latency.P99), ms(res.Latency.P999), ms(res.Latency.Max)},
			Clusters:  res.Counts,
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printBenchTable(a.stdout, target.desc, o, loadPercent, res)
	}
	switch {
	case runErr != nil:
		return runErr
	case errs > 0:
		msg := fmt.Sprintf("%d of %d operations failed", res.Errors, res.Ops)
		if res.Missed > 0 {
			msg += fmt.Sprintf(", %d requests never started (the target or --concurrency could not keep up with the rate)", res.Missed)
		}
		if res.FirstError != nil {
			msg += "; first error: " + res.FirstError.Error()
		}
		return withCode(exitNo, errors.New(msg))
	}
	return nil
}

func printProgress(w io.Writer, p loadgen.Progress) {
	if p.Done {
		fmt.Fprintf(w, "%-9s done   %7.1fs  ops %9d  errors %6d  %10.1f ops/s average\n", p.Phase, p.Elapsed.Seconds(), p.Ops, p.Errors, p.Rate)
		return
	}
	fmt.Fprintf(w, "%-9s        %7.1fs  ops %9d  errors %6d  %10.1f ops/s\n", p.Phase, p.Elapsed.Seconds(), p.Ops, p.Errors, p.Rate)
}

func printBenchTable(w io.Writer, desc string, o benchOptions, loadPercent float64, res loadgen.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	mode := fmt.Sprintf("closed loop, %d workers", o.concurrency)
	switch {
	case loadPercent > 0:
		mode = fmt.Sprintf("open loop at %.1f ops/s = %g%% of %.1f ops/s measured closed-loop; at most %d in flight", res.TargetRate, loadPercent, res.Capacity, o.concurrency)
	case res.Mode == "open":
		mode = fmt.Sprintf("open loop at %.1f ops/s; at most %d in flight", res.TargetRate, o.concurrency)
	}
	fmt.Fprintf(tw, "operation\t%s\n", desc)
	fmt.Fprintf(tw, "load\t%s\n", mode)
	fmt.Fprintf(tw, "duration\t%.3fs\n", res.Elapsed.Seconds())
	fmt.Fprintf(tw, "operations\t%d\n", res.Ops)
	fmt.Fprintf(tw, "errors\t%d\n", res.Errors)
	if res.Mode == "open" {
		fmt.Fprintf(tw, "never started\t%d\n", res.Missed)
	}
	fmt.Fprintf(tw, "throughput\t%.1f ops/s\n", res.OpsPerSec)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "latency ms\tp50\tp90\tp99\tp99.9\tmax\tmean\t\n")
	l := res.Latency
	fmt.Fprintf(tw, "\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max), ms(res.Mean))
	tw.Flush()
	if len(res.Counts) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "cluster\toperations\n")
		for _, name := range loadgen.SortedKeys(res.Counts) {
			fmt.Fprintf(tw, "%s\t%d\n", name, res.Counts[name])
		}
		tw.Flush()
	}
}
