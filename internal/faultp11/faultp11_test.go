package faultp11_test

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/personapass/hsm/internal/faultp11"
	"github.com/personapass/hsm/internal/testhsm"
)

// p256 is the DER encoding of the P-256 curve OID, for CKA_EC_PARAMS.
var p256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}

// cluster is a SoftHSM token behind a faultp11 module, with a logged-in session.
type cluster struct {
	tok  *testhsm.Token
	mod  *faultp11.Module
	ctx  *pkcs11.Ctx
	sh   pkcs11.SessionHandle
	key  pkcs11.ObjectHandle
	env  map[string]string
	slot uint
}

func newCluster(t testing.TB, label string, latency time.Duration) *cluster {
	t.Helper()
	c := &cluster{tok: testhsm.NewToken(t, label)}
	c.mod = testhsm.FaultModule(t, c.tok.Module, latency)
	c.env = maps.Clone(c.tok.Env())
	maps.Copy(c.env, c.mod.Env())
	c.ctx, c.sh = testhsm.OpenSession(t, c.mod.Path, c.env, label, c.tok.UserPIN)
	c.slot = testhsm.FindSlot(t, c.ctx, label)
	_, priv, err := c.ctx.GenerateKeyPair(c.sh,
		[]*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, p256), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, "k")})
	if err != nil {
		t.Fatalf("GenerateKeyPair: %v", err)
	}
	c.key = priv
	return c
}

func (c *cluster) sign() error {
	if err := c.ctx.SignInit(c.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, c.key); err != nil {
		return err
	}
	_, err := c.ctx.Sign(c.sh, make([]byte, 32))
	return err
}

// reinit finalizes and initializes the module, then logs in again.
func (c *cluster) reinit(t testing.TB) error {
	t.Helper()
	if err := c.ctx.Finalize(); err != nil {
		t.Fatalf("Finalize: %v", err)
	}
	for k, v := range c.env {
		t.Setenv(k, v)
	}
	if err := c.ctx.Initialize(); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	sh, err := c.ctx.OpenSession(c.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return err
	}
	c.sh = sh
	if err := c.ctx.Login(sh, pkcs11.CKU_USER, c.tok.UserPIN); err != nil {
		return err
	}
	// Object handles do not survive re-initialization: find the key again.
	if err := c.ctx.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "k"),
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)}); err != nil {
		return err
	}
	objs, _, err := c.ctx.FindObjects(sh, 1)
	if err != nil {
		return err
	}
	if len(objs) != 1 {
		t.Fatalf("key not found after re-init")
	}
	c.key = objs[0]
	return c.ctx.FindObjectsFinal(sh)
}

func setMode(t *testing.T, m *faultp11.Module, mode string) {
	t.Helper()
	if err := m.SetMode(mode); err != nil {
		t.Fatal(err)
	}
}

func isRV(err error, rv uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == rv
}

func TestLatency(t *testing.T) {
	const lat = 50 * time.Millisecond
	c := newCluster(t, "slow", lat)

	start := time.Now()
	if err := c.sign(); err != nil {
		t.Fatal(err)
	}
	// SignInit is not delayed and the length query of Sign is skipped: one latency.
	if d := time.Since(start); d < lat || d >= 2*lat {
		t.Errorf("sign took %v, want one latency of %v", d, lat)
	}
	start = time.Now()
	if _, err := c.ctx.GenerateRandom(c.sh, 16); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < lat {
		t.Errorf("GenerateRandom took %v, want >= %v", d, lat)
	}
	start = time.Now()
	if _, err := c.ctx.GetSessionInfo(c.sh); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= lat {
		t.Errorf("GetSessionInfo took %v: non-crypto calls must not be delayed", d)
	}
}

func TestDownAndRecovery(t *testing.T) {
	c := newCluster(t, "down", 0)
	setMode(t, c.mod, faultp11.ModeDown)

	if err := c.sign(); !isRV(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Errorf("sign: %v, want CKR_DEVICE_ERROR", err)
	}
	if _, err := c.ctx.GetSessionInfo(c.sh); !isRV(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Errorf("GetSessionInfo: %v, want CKR_DEVICE_ERROR", err)
	}
	if _, err := c.ctx.GetSlotList(true); !isRV(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Errorf("GetSlotList: %v, want CKR_DEVICE_ERROR", err)
	}
	if _, err := c.ctx.GetInfo(); !isRV(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Errorf("GetInfo: %v, want CKR_DEVICE_ERROR", err)
	}
	// Finalize and Initialize still work, but the device stays down.
	if err := c.reinit(t); !isRV(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Errorf("OpenSession after re-init while down: %v, want CKR_DEVICE_ERROR", err)
	}

	setMode(t, c.mod, faultp11.ModeOK)
	if err := c.reinit(t); err != nil {
		t.Fatalf("re-init after recovery: %v", err)
	}
	if err := c.sign(); err != nil {
		t.Fatalf("sign after recovery: %v", err)
	}
}

func TestBusy(t *testing.T) {
	c := newCluster(t, "busy", 0)
	setMode(t, c.mod, faultp11.Busy(2))
	for i := range 2 {
		if err := c.sign(); !isRV(err, pkcs11.CKR_FUNCTION_FAILED) {
			t.Fatalf("sign %d: %v, want CKR_FUNCTION_FAILED", i, err)
		}
	}
	if err := c.sign(); err != nil {
		t.Fatalf("sign after the busy ones: %v", err)
	}
	// Writing the same mode again re-arms it; non-crypto calls are not affected.
	setMode(t, c.mod, faultp11.Busy(1))
	if _, err := c.ctx.GetSessionInfo(c.sh); err != nil {
		t.Fatalf("GetSessionInfo while busy: %v", err)
	}
	if _, err := c.ctx.GenerateRandom(c.sh, 8); !isRV(err, pkcs11.CKR_FUNCTION_FAILED) {
		t.Fatalf("GenerateRandom: %v, want CKR_FUNCTION_FAILED", err)
	}
	if err := c.sign(); err != nil {
		t.Fatalf("sign: %v", err)
	}
}

func TestHangBlocksUntilOK(t *testing.T) {
	c := newCluster(t, "hang", 0)
	setMode(t, c.mod, faultp11.ModeHang)
	done := make(chan error, 1)
	go func() { done <- c.sign() }()
	select {
	case err := <-done:
		t.Fatalf("sign returned while hung: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	setMode(t, c.mod, faultp11.ModeOK)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sign after hang: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sign still blocked after mode ok")
	}
}

// Two faultp11 copies in one process keep separate modes and targets.
func TestCopiesAreIndependent(t *testing.T) {
	a := newCluster(t, "a", 0)
	b := newCluster(t, "b", 0)
	setMode(t, a.mod, faultp11.ModeDown)
	if err := a.sign(); !isRV(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Fatalf("a: %v, want CKR_DEVICE_ERROR", err)
	}
	if err := b.sign(); err != nil {
		t.Fatalf("b: %v", err)
	}
	testhsm.FindSlot(t, b.ctx, "b")
}

// faultp11 in front of p11-kit-client.so: a slow cluster reached over a socket.
func TestInFrontOfP11KitClient(t *testing.T) {
	const lat = 20 * time.Millisecond
	tok := testhsm.NewToken(t, "remote")
	srv := testhsm.StartServer(t, tok)
	mod := testhsm.FaultModule(t, srv.ClientModule, lat)
	env := maps.Clone(srv.Env())
	maps.Copy(env, mod.Env())
	ctx, sh := testhsm.OpenSession(t, mod.Path, env, tok.Label, tok.UserPIN)

	start := time.Now()
	if _, err := ctx.GenerateRandom(sh, 32); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < lat {
		t.Errorf("GenerateRandom took %v, want >= %v", d, lat)
	}
	setMode(t, mod, faultp11.ModeDown)
	if _, err := ctx.GenerateRandom(sh, 32); !isRV(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Fatalf("GenerateRandom while down: %v, want CKR_DEVICE_ERROR", err)
	}
	setMode(t, mod, faultp11.ModeOK)
	if _, err := ctx.GenerateRandom(sh, 32); err != nil {
		t.Fatalf("GenerateRandom after down: %v", err)
	}
}

// A missing target makes C_Initialize fail instead of crashing the client.
func TestMissingTarget(t *testing.T) {
	m := testhsm.FaultModule(t, "/nonexistent/module.so", 0)
	t.Setenv("FAULTP11_TARGET", m.Target)
	ctx := pkcs11.New(m.Path)
	if ctx == nil {
		t.Fatal("cannot load faultp11")
	}
	if err := ctx.Initialize(); !isRV(err, pkcs11.CKR_GENERAL_ERROR) {
		t.Fatalf("Initialize: %v, want CKR_GENERAL_ERROR", err)
	}
}

// BenchmarkSign measures a P-256 signature on SoftHSM through faultp11
// without latency.
func BenchmarkSign(b *testing.B) {
	c := newCluster(b, "bench", 0)
	for b.Loop() {
		if err := c.sign(); err != nil {
			b.Fatal(err)
		}
	}
}
