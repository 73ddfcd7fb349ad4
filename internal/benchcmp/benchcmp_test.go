package benchcmp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/personapass/hsm/hsmclient"
	"github.com/personapass/hsm/internal/testhsm"
)

// Parallelism levels: total goroutines issuing operations (not multiplied by
// GOMAXPROCS as b.SetParallelism would be).
var parallelism = []int{1, 8, 64}

// maxPar is the most goroutines of any benchmark, and the number of sessions
// each implementation may open (hsmclient pool size, crypto11 pool size, raw
// pre-opened sessions), so none is short of sessions.
const maxPar = 64

const (
	ckmEdDSA  = 0x1057
	pinEnvVar = "BENCHCMP_USER_PIN"
)

// Key labels on the shared token.
const (
	labelP256    = "bench-p256"
	labelEd25519 = "bench-ed25519"
	labelRSA     = "bench-rsa2048"
	labelAES     = "bench-aes256"
)

// op is one benchmarked operation: ECDSA P-256, Ed25519 and RSA-2048 PSS
// signatures over 32 bytes, and AES-256-GCM encryption of 1 KiB.
type op struct {
	name  string
	label string
	kind  hsmclient.KeyType
}

var ops = []op{
	{"ecdsa-p256", labelP256, hsmclient.KeyECP256},
	{"ed25519", labelEd25519, hsmclient.KeyEd25519},
	{"rsa2048-pss", labelRSA, hsmclient.KeyRSA2048},
	{"aes256-gcm-1k", labelAES, hsmclient.KeyAES256},
}

var (
	digest    = sha256.Sum256([]byte("PersonaPass benchmark message"))
	plaintext = bytes.Repeat([]byte{0xa5}, 1024)
	pssOpts   = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
)

// worker returns the error of one operation.
type worker func() error

// impl builds one worker per goroutine for an operation, or reports that it
// does not support it.
type impl struct {
	name      string
	newWorker func(o op, w int) (worker, bool)
}

// runPar runs b.N operations spread over par goroutines, each with its own
// worker, and reports throughput and allocations. Every worker first runs one
// untimed operation, all at once, so that pools hold par sessions before the
// clock starts.
func runPar(b *testing.B, par int, workers []worker) {
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var warm sync.WaitGroup
	for _, w := range workers {
		warm.Go(func() {
			if err := w(); err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
	}
	warm.Wait()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range par {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := workers[w](); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// copyModule gives a PKCS#11 library its own file name, so the process loads
// and initializes it once more, independently of the other copies.
func copyModule(tb testing.TB, src string) string {
	tb.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	dst := filepath.Join(tb.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dst
}

func setEnv(tb testing.TB, envs ...map[string]string) {
	for _, env := range envs {
		for k, v := range env {
			tb.Setenv(k, v)
		}
	}
}

// ---- raw: miekg/pkcs11, one pre-opened logged-in session per goroutine ----

type rawSide struct {
	ctx      *pkcs11.Ctx
	sessions []pkcs11.SessionHandle
	keys     map[string]pkcs11.ObjectHandle
}

// openRaw loads module (with env set for its load and C_Initialize), opens
// maxPar sessions, logs in once and finds the keys of the given operations.
func openRaw(b *testing.B, module string, env map[string]string, tok *testhsm.Token, keys []op) *rawSide {
	b.Helper()
	setEnv(b, env)
	p := pkcs11.New(module)
	if p == nil {
		b.Fatalf("cannot load %s", module)
	}
	if err := p.Initialize(); err != nil {
		b.Fatalf("C_Initialize %s: %v", module, err)
	}
	r := &rawSide{ctx: p, keys: map[string]pkcs11.ObjectHandle{}}
	b.Cleanup(func() {
		for _, s := range r.sessions {
			_ = p.CloseSession(s)
		}
		_ = p.Finalize()
		p.Destroy()
	})
	slot := testhsm.FindSlot(b, p, tok.Label)
	for range maxPar {
		s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			b.Fatalf("C_OpenSession: %v", err)
		}
		r.sessions = append(r.sessions, s)
	}
	if err := p.Login(r.sessions[0], pkcs11.CKU_USER, tok.UserPIN); err != nil {
		b.Fatalf("C_Login: %v", err)
	}
	for _, o := range keys {
		class := uint(pkcs11.CKO_PRIVATE_KEY)
		if o.kind == hsmclient.KeyAES256 {
			class = pkcs11.CKO_SECRET_KEY
		}
		s := r.sessions[0]
		if err := p.FindObjectsInit(s, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, o.label),
		}); err != nil {
			b.Fatal(err)
		}
		hs, _, err := p.FindObjects(s, 1)
		_ = p.FindObjectsFinal(s)
		if err != nil || len(hs) != 1 {
			b.Fatalf("raw: key %s not found (%v): keys created by another module instance must be visible", o.label, err)
		}
		r.keys[o.label] = hs[0]
	}
	return r
}

func (r *rawSide) worker(o op, w int) (worker, bool) {
	p, s, key := r.ctx, r.sessions[w], r.keys[o.label]
	sign := func(mech []*pkcs11.Mechanism, data []byte) worker {
		return func() error {
			if err := p.SignInit(s, mech, key); err != nil {
				return fmt.Errorf("raw %s: C_SignInit: %w", o.name, err)
			}
			_, err := p.Sign(s, data)
			return err
		}
	}
	switch o.kind {
	case hsmclient.KeyECP256:
		return sign([]*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, digest[:]), true
	case hsmclient.KeyEd25519:
		return sign([]*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, digest[:]), true
	case hsmclient.KeyRSA2048:
		params := pkcs11.NewPSSParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, 32)
		return sign([]*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, params)}, digest[:]), true
	case hsmclient.KeyAES256:
		// The same calls as hsmclient.Encrypt: the nonce comes from the token.
		return func() error {
			_, err := r.seal(w)
			return err
		}, true
	}
	return nil, false
}

// seal encrypts plaintext as hsmclient does and returns nonce | ciphertext | tag.
func (r *rawSide) seal(w int) ([]byte, error) {
	p, s := r.ctx, r.sessions[w]
	iv, err := p.GenerateRandom(s, 12)
	if err != nil {
		return nil, err
	}
	params := pkcs11.NewGCMParams(iv, nil, 128)
	defer params.Free()
	if err := p.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, r.keys[labelAES]); err != nil {
		return nil, err
	}
	ct, err := p.Encrypt(s, plaintext)
	return append(iv, ct...), err
}

// ---- hsmclient ----

type clientSide struct {
	c       *hsmclient.Client
	signers map[string]*hsmclient.Signer
}

// smallPool is the pool size of the latency sweep's second hsmclient.
const smallPool = 16

func openClient(b *testing.B, module string, env map[string]string, tok *testhsm.Token) *clientSide {
	return openClientPool(b, module, env, tok, maxPar)
}

func openClientPool(b *testing.B, module string, env map[string]string, tok *testhsm.Token, sessions int) *clientSide {
	b.Helper()
	b.Setenv(pinEnvVar, tok.UserPIN)
	c, err := hsmclient.Open(context.Background(), hsmclient.Config{
		Clusters: []hsmclient.ClusterConfig{{
			Name: "bench", Module: module, TokenLabel: tok.Label, PINEnv: pinEnvVar, ModuleEnv: env,
		}},
		Pool: hsmclient.PoolConfig{MaxSessions: sessions},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return &clientSide{c: c, signers: map[string]*hsmclient.Signer{}}
}

func (cs *clientSide) loadSigners(b *testing.B) {
	for _, o := range ops {
		if o.kind == hsmclient.KeyAES256 {
			continue
		}
		s, err := cs.c.Signer(context.Background(), o.label)
		if err != nil {
			b.Fatal(err)
		}
		cs.signers[o.label] = s
	}
}

func (cs *clientSide) worker(o op, _ int) (worker, bool) {
	ctx := context.Background()
	switch o.kind {
	case hsmclient.KeyAES256:
		return func() error { _, err := cs.c.Encrypt(ctx, o.label, plaintext, nil); return err }, true
	case hsmclient.KeyEd25519:
		s := cs.signers[o.label]
		return func() error { _, err := s.SignContext(ctx, digest[:], crypto.Hash(0)); return err }, true
	case hsmclient.KeyRSA2048:
		s := cs.signers[o.label]
		return func() error { _, err := s.SignContext(ctx, digest[:], pssOpts); return err }, true
	default:
		s := cs.signers[o.label]
		return func() error { _, err := s.SignContext(ctx, digest[:], crypto.SHA256); return err }, true
	}
}

// ---- crypto11 ----

type crypto11Side struct {
	ctx     *crypto11.Context
	signers map[string]crypto.Signer
	gcm     interface {
		Seal(dst, nonce, plaintext, additionalData []byte) []byte
	}
}

func openCrypto11(b *testing.B, module string, env map[string]string, tok *testhsm.Token) *crypto11Side {
	b.Helper()
	setEnv(b, env)
	c, err := crypto11.Configure(&crypto11.Config{
		Path: module, TokenLabel: tok.Label, Pin: tok.UserPIN,
		MaxSessions: maxPar + 1, // crypto11 keeps one session for itself and pools the rest
	})
	if err != nil {
		b.Fatalf("crypto11: %v", err)
	}
	b.Cleanup(func() { _ = c.Close() })
	side := &crypto11Side{ctx: c, signers: map[string]crypto.Signer{}}
	for _, label := range []string{labelP256, labelRSA} {
		s, err := c.FindKeyPair(nil, []byte(label))
		if err != nil || s == nil {
			b.Fatalf("crypto11: key pair %s: %v", label, err)
		}
		side.signers[label] = s
	}
	key, err := c.FindKey(nil, []byte(labelAES))
	if err != nil || key == nil {
		b.Fatalf("crypto11: key %s: %v", labelAES, err)
	}
	if side.gcm, err = key.NewGCM(); err != nil {
		b.Fatal(err)
	}
	return side
}

func (cs *crypto11Side) worker(o op, _ int) (worker, bool) {
	switch o.kind {
	case hsmclient.KeyECP256:
		s := cs.signers[o.label]
		return func() error { _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); return err }, true
	case hsmclient.KeyRSA2048:
		s := cs.signers[o.label]
		return func() error { _, err := s.Sign(rand.Reader, digest[:], pssOpts); return err }, true
	case hsmclient.KeyAES256:
		// crypto11's AEAD takes the nonce from the caller (drawn here in Go,
		// one PKCS#11 call fewer than hsmclient and raw) and panics on error.
		nonce := make([]byte, 12)
		return func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("crypto11 seal: %v", r)
				}
			}()
			if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
				return err
			}
			cs.gcm.Seal(nil, nonce, plaintext, nil)
			return nil
		}, true
	}
	return nil, false // crypto11 v1.6 has no EdDSA
}

// ---- shared setup ----

// bench is one SoftHSM token with every benchmark key, opened three times
// in the same process: by hsmclient, raw miekg/pkcs11 and crypto11, each
// through its own copy of libsofthsm2.so (a library may be initialized once
// per process) with SOFTHSM2_CONF pointing at the same token directory.
type bench struct {
	tok    *testhsm.Token
	client *clientSide
	raw    *rawSide
	c11    *crypto11Side
}

// newBench creates the token and keys with hsmclient, then loads the other
// two copies (SoftHSM reads existing objects from the token directory at
// C_Initialize, so keys created before are visible to every copy) and checks
// that every implementation's output verifies.
func newBench(b *testing.B) *bench {
	b.Helper()
	tok := testhsm.NewToken(b, "bench")
	bn := &bench{tok: tok}
	bn.client = openClient(b, tok.Module, tok.Env(), tok)
	ctx := context.Background()
	for _, o := range ops {
		if _, err := bn.client.c.GenerateKey(ctx, o.label, o.kind); err != nil {
			b.Fatalf("generate %s: %v", o.label, err)
		}
	}
	bn.client.loadSigners(b)
	soft := testhsm.SoftHSMModule(b)
	bn.raw = openRaw(b, copyModule(b, soft), tok.Env(), tok, ops)
	bn.c11 = openCrypto11(b, copyModule(b, soft), tok.Env(), tok)
	bn.verify(b)
	return bn
}

// verify checks one output of each implementation against the public keys
// (and the AES key, by decrypting with hsmclient): the three module copies
// really use the same keys.
func (bn *bench) verify(b *testing.B) {
	b.Helper()
	ctx := context.Background()
	pub := func(label string) crypto.PublicKey { return bn.client.signers[label].Public() }
	// raw
	for _, o := range ops {
		if o.kind == hsmclient.KeyAES256 {
			sealed, err := bn.raw.seal(0)
			if err != nil {
				b.Fatal(err)
			}
			if pt, err := bn.client.c.Decrypt(ctx, labelAES, sealed, nil); err != nil || !bytes.Equal(pt, plaintext) {
				b.Fatalf("raw AES-GCM output does not decrypt with hsmclient: %v", err)
			}
			continue
		}
		p, s, key := bn.raw.ctx, bn.raw.sessions[0], bn.raw.keys[o.label]
		var mech *pkcs11.Mechanism
		switch o.kind {
		case hsmclient.KeyECP256:
			mech = pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
		case hsmclient.KeyEd25519:
			mech = pkcs11.NewMechanism(ckmEdDSA, nil)
		default:
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, 32))
		}
		if err := p.SignInit(s, []*pkcs11.Mechanism{mech}, key); err != nil {
			b.Fatal(err)
		}
		sig, err := p.Sign(s, digest[:])
		if err != nil {
			b.Fatal(err)
		}
		ok := false
		switch o.kind {
		case hsmclient.KeyECP256:
			der, err := hsmclient.ECDSARawToASN1(sig)
			ok = err == nil && ecdsa.VerifyASN1(pub(o.label).(*ecdsa.PublicKey), digest[:], der)
		case hsmclient.KeyEd25519:
			ok = ed25519.Verify(pub(o.label).(ed25519.PublicKey), digest[:], sig)
		default:
			ok = rsa.VerifyPSS(pub(o.label).(*rsa.PublicKey), crypto.SHA256, digest[:], sig, pssOpts) == nil
		}
		if !ok {
			b.Fatalf("raw %s signature does not verify with hsmclient's public key", o.name)
		}
	}
	// crypto11
	sig, err := bn.c11.signers[labelP256].Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(pub(labelP256).(*ecdsa.PublicKey), digest[:], sig) {
		b.Fatalf("crypto11 ECDSA signature does not verify: %v", err)
	}
	sig, err = bn.c11.signers[labelRSA].Sign(rand.Reader, digest[:], pssOpts)
	if err != nil || rsa.VerifyPSS(pub(labelRSA).(*rsa.PublicKey), crypto.SHA256, digest[:], sig, pssOpts) != nil {
		b.Fatalf("crypto11 RSA-PSS signature does not verify: %v", err)
	}
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	ct := bn.c11.gcm.Seal(nil, nonce, plaintext, nil)
	if pt, err := bn.client.c.Decrypt(ctx, labelAES, append(nonce, ct...), nil); err != nil || !bytes.Equal(pt, plaintext) {
		b.Fatalf("crypto11 AES-GCM output does not decrypt with hsmclient: %v", err)
	}
}

func (bn *bench) impls() []impl {
	return []impl{
		{"raw", bn.raw.worker},
		{"hsmclient", bn.client.worker},
		{"crypto11", bn.c11.worker},
	}
}

// BenchmarkOps compares raw PKCS#11, hsmclient and crypto11 on the same
// SoftHSM token: BenchmarkOps/op=<op>/par=<goroutines>/impl=<impl>. Compare
// with `benchstat -col /impl`.
func BenchmarkOps(b *testing.B) {
	bn := newBench(b)
	for _, o := range ops {
		b.Run("op="+o.name, func(b *testing.B) {
			for _, par := range parallelism {
				b.Run(fmt.Sprintf("par=%d", par), func(b *testing.B) {
					for _, im := range bn.impls() {
						workers := make([]worker, par)
						ok := true
						for w := range par {
							if workers[w], ok = im.newWorker(o, w); !ok {
								break
							}
						}
						if !ok {
							continue // not supported by this implementation
						}
						b.Run("impl="+im.name, func(b *testing.B) { runPar(b, par, workers) })
					}
				})
			}
		})
	}
}

// Injected latency per crypto call (C_Sign, C_GenerateRandom, C_Encrypt...),
// standing in for a network HSM's round trip.
const injectedLatency = 2 * time.Millisecond

// latencyPar are the goroutine counts of the latency sweep; the hsmclient
// pool holds maxPar sessions, so throughput should stop growing beyond it.
var latencyPar = []int{1, 8, 16, 32, 64, 128}

// BenchmarkLatency2ms signs with ECDSA P-256 through faultp11, which adds
// 2 ms to every C_Sign, to show throughput scaling with sessions up to the
// pool size: BenchmarkLatency2ms/par=<goroutines>/impl=<impl>, where
// impl=hsmclient-pool16 is a client limited to 16 sessions. The ideal is
// min(par, pool size) / 2 ms, capped by the token's own capacity
// (BenchmarkOps/op=ecdsa-p256/par=64/impl=raw).
func BenchmarkLatency2ms(b *testing.B) {
	tok := testhsm.NewToken(b, "bench")
	soft := testhsm.SoftHSMModule(b)
	// Keys are made through a plain module copy, without latency.
	setup := openClient(b, copyModule(b, soft), tok.Env(), tok)
	if _, err := setup.c.GenerateKey(context.Background(), labelP256, hsmclient.KeyECP256); err != nil {
		b.Fatal(err)
	}
	wrap := func() (string, map[string]string) {
		fm := testhsm.FaultModule(b, copyModule(b, soft), injectedLatency)
		env := maps.Clone(tok.Env())
		maps.Copy(env, fm.Env())
		return fm.Path, env
	}
	mod, env := wrap()
	client := openClient(b, mod, env, tok)
	client.loadSigners1(b, labelP256)
	// A client whose pool is smaller than the parallelism: throughput stops
	// growing at its pool size.
	mod, env = wrap()
	small := openClientPool(b, mod, env, tok, smallPool)
	small.loadSigners1(b, labelP256)
	mod, env = wrap()
	raw := openRaw(b, mod, env, tok, ops[:1])
	mod, env = wrap()
	setEnv(b, env)
	c11cfg := &crypto11.Config{Path: mod, TokenLabel: tok.Label, Pin: tok.UserPIN, MaxSessions: maxPar + 1}
	c11, err := crypto11.Configure(c11cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c11.Close() })
	c11signer, err := c11.FindKeyPair(nil, []byte(labelP256))
	if err != nil || c11signer == nil {
		b.Fatalf("crypto11: %v", err)
	}
	c11side := &crypto11Side{signers: map[string]crypto.Signer{labelP256: c11signer}}

	o := ops[0]
	impls := []impl{{"raw", raw.worker}, {"hsmclient", client.worker}, {"crypto11", c11side.worker},
		{fmt.Sprintf("hsmclient-pool%d", smallPool), small.worker}}
	for _, par := range latencyPar {
		b.Run(fmt.Sprintf("par=%d", par), func(b *testing.B) {
			for _, im := range impls {
				if im.name == "raw" && par > maxPar {
					continue // raw has one session per goroutine
				}
				workers := make([]worker, par)
				for w := range par {
					workers[w], _ = im.newWorker(o, w)
				}
				b.Run("impl="+im.name, func(b *testing.B) { runPar(b, par, workers) })
			}
		})
	}
}

func (cs *clientSide) loadSigners1(b *testing.B, label string) {
	s, err := cs.c.Signer(context.Background(), label)
	if err != nil {
		b.Fatal(err)
	}
	cs.signers[label] = s
}

// BenchmarkCallOverhead isolates what hsmclient adds around one PKCS#11
// signature (ECDSA P-256, one goroutine), by wrapping the raw call the ways a
// client may: on the caller's goroutine (raw), on a new goroutine per call
// with the caller waiting on a channel (goroutine), the same plus a
// context.WithTimeout and select (goroutine+timeout: the shape of
// hsmclient's call), on the caller's goroutine with a time.AfterFunc
// watchdog (inline+afterfunc), and hsmclient itself. See BENCHMARKS.md.
func BenchmarkCallOverhead(b *testing.B) {
	bn := newBench(b)
	o := ops[0]
	rw, _ := bn.raw.worker(o, 0)
	hw, _ := bn.client.worker(o, 0)
	variants := []struct {
		name string
		w    worker
	}{
		{"raw", rw},
		{"goroutine", func() error {
			done := make(chan error, 1)
			go func() { done <- rw() }()
			return <-done
		}},
		{"goroutine+timeout", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- rw() }()
			select {
			case err := <-done:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}},
		{"inline+afterfunc", func() error {
			t := time.AfterFunc(2*time.Second, func() {})
			defer t.Stop()
			return rw()
		}},
		{"hsmclient", hw},
	}
	for _, v := range variants {
		b.Run("wrap="+v.name, func(b *testing.B) { runPar(b, 1, []worker{v.w}) })
	}
}
