package testhsm_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/personapass/hsm/internal/testhsm"
)

// p256 is the DER encoding of the P-256 curve OID, for CKA_EC_PARAMS.
var p256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}

// genKey makes a persistent P-256 key pair labelled label and returns the
// private key handle and the public key.
func genKey(t *testing.T, ctx *pkcs11.Ctx, sh pkcs11.SessionHandle, label string) (pkcs11.ObjectHandle, *ecdsa.PublicKey) {
	t.Helper()
	pubT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, p256),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	privT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	pub, priv, err := ctx.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}, pubT, privT)
	if err != nil {
		t.Fatalf("GenerateKeyPair: %v", err)
	}
	attrs, err := ctx.GetAttributeValue(sh, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		t.Fatalf("GetAttributeValue: %v", err)
	}
	var point []byte
	if _, err := asn1.Unmarshal(attrs[0].Value, &point); err != nil {
		t.Fatalf("CKA_EC_POINT: %v", err)
	}
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		t.Fatalf("EC point: %v", err)
	}
	return priv, key
}

// findKey returns the private key labelled label, or 0 if there is none.
func findKey(t *testing.T, ctx *pkcs11.Ctx, sh pkcs11.SessionHandle, label string) pkcs11.ObjectHandle {
	t.Helper()
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	if err := ctx.FindObjectsInit(sh, tmpl); err != nil {
		t.Fatalf("FindObjectsInit: %v", err)
	}
	objs, _, err := ctx.FindObjects(sh, 2)
	if err != nil {
		t.Fatalf("FindObjects: %v", err)
	}
	if err := ctx.FindObjectsFinal(sh); err != nil {
		t.Fatalf("FindObjectsFinal: %v", err)
	}
	if len(objs) == 0 {
		return 0
	}
	return objs[0]
}

// sign signs a digest of msg with CKM_ECDSA.
func sign(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle, key pkcs11.ObjectHandle, msg string) ([]byte, error) {
	if err := ctx.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, key); err != nil {
		return nil, err
	}
	d := sha256.Sum256([]byte(msg))
	return ctx.Sign(sh, d[:])
}

// mustVerify checks a raw r||s signature of msg.
func mustVerify(t *testing.T, pub *ecdsa.PublicKey, msg string, sig []byte) {
	t.Helper()
	d := sha256.Sum256([]byte(msg))
	r, s := new(big.Int).SetBytes(sig[:len(sig)/2]), new(big.Int).SetBytes(sig[len(sig)/2:])
	if !ecdsa.Verify(pub, d[:], r, s) {
		t.Fatalf("signature of %q does not verify", msg)
	}
}

// isRV reports whether err is the PKCS#11 error rv.
func isRV(err error, rv uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == rv
}

func TestModulePaths(t *testing.T) {
	for _, p := range []string{testhsm.SoftHSMModule(t), testhsm.P11KitClientModule(t)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestNewToken(t *testing.T) {
	tok := testhsm.NewToken(t, "alpha")
	if tok.Label != "alpha" || tok.UserPIN == "" || tok.SOPIN == "" || tok.UserPIN == tok.SOPIN {
		t.Fatalf("unexpected token fields: label %q, PINs set %v", tok.Label, tok.UserPIN != "" && tok.SOPIN != "")
	}
	if got := tok.Env()["SOFTHSM2_CONF"]; got != tok.ConfPath {
		t.Fatalf("Env SOFTHSM2_CONF = %q, want %q", got, tok.ConfPath)
	}
	if filepath.Dir(tok.Module) != tok.Dir {
		t.Fatalf("module %s is not the token's own copy", tok.Module)
	}
	ctx, sh := testhsm.OpenSession(t, tok.Module, tok.Env(), tok.Label, tok.UserPIN)
	info, err := ctx.GetSessionInfo(sh)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
		t.Fatalf("session state %d, want RW user", info.State)
	}
}

// Two copies of libsofthsm2.so in one process each read their own
// SOFTHSM2_CONF and see only their own token.
func TestModuleCopiesAreIndependent(t *testing.T) {
	a, b := testhsm.NewToken(t, "a"), testhsm.NewToken(t, "b")
	ctxA, shA := testhsm.OpenSession(t, a.Module, a.Env(), a.Label, a.UserPIN)
	ctxB, shB := testhsm.OpenSession(t, b.Module, b.Env(), b.Label, b.UserPIN)
	genKey(t, ctxA, shA, "only-in-a")

	for _, c := range []struct {
		ctx  *pkcs11.Ctx
		want string
	}{{ctxA, "a"}, {ctxB, "b"}} {
		slots, err := c.ctx.GetSlotList(true)
		if err != nil {
			t.Fatal(err)
		}
		var labels []string
		for _, s := range slots {
			info, err := c.ctx.GetTokenInfo(s)
			if err != nil {
				t.Fatal(err)
			}
			if info.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
				labels = append(labels, info.Label)
			}
		}
		if len(labels) != 1 || labels[0] != c.want {
			t.Errorf("module of token %s sees initialized tokens %q", c.want, labels)
		}
	}
	if findKey(t, ctxB, shB, "only-in-a") != 0 {
		t.Fatal("key created in token a is visible in token b")
	}
}

func TestCopyToRestoresObjectsOfThatTime(t *testing.T) {
	orig := testhsm.NewToken(t, "primary")
	ctx, sh := testhsm.OpenSession(t, orig.Module, orig.Env(), orig.Label, orig.UserPIN)
	_, pub := genKey(t, ctx, sh, "before-backup")

	dr := orig.CopyTo(t)
	genKey(t, ctx, sh, "after-backup")

	if dr.Label != orig.Label || dr.UserPIN != orig.UserPIN || dr.SOPIN != orig.SOPIN {
		t.Fatal("copy does not keep label and PINs")
	}
	if dr.Dir == orig.Dir || dr.Module == orig.Module || dr.ConfPath == orig.ConfPath {
		t.Fatal("copy shares files with the original")
	}
	ctx2, sh2 := testhsm.OpenSession(t, dr.Module, dr.Env(), dr.Label, dr.UserPIN)
	key := findKey(t, ctx2, sh2, "before-backup")
	if key == 0 {
		t.Fatal("key from before the copy is missing")
	}
	if findKey(t, ctx2, sh2, "after-backup") != 0 {
		t.Fatal("key created after the copy is present")
	}
	sig, err := sign(ctx2, sh2, key, "restored")
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, pub, "restored", sig)
}

func TestServerSignsECDSA(t *testing.T) {
	tok := testhsm.NewToken(t, "served")
	srv := testhsm.StartServer(t, tok)
	if srv.Env()["P11_KIT_SERVER_ADDRESS"] != "unix:path="+srv.Socket || srv.Address() != "unix:path="+srv.Socket {
		t.Fatalf("address %q", srv.Address())
	}
	ctx, sh := testhsm.OpenSession(t, srv.ClientModule, srv.Env(), tok.Label, tok.UserPIN)
	key, pub := genKey(t, ctx, sh, "k")
	sig, err := sign(ctx, sh, key, "hello")
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, pub, "hello", sig)
}

// Two servers with two client module copies are two independent clusters.
func TestServersAreIndependent(t *testing.T) {
	a, b := testhsm.NewToken(t, "cluster-a"), testhsm.NewToken(t, "cluster-b")
	sa, sb := testhsm.StartServer(t, a), testhsm.StartServer(t, b)
	ctxA, _ := testhsm.OpenSession(t, sa.ClientModule, sa.Env(), a.Label, a.UserPIN)
	ctxB, _ := testhsm.OpenSession(t, sb.ClientModule, sb.Env(), b.Label, b.UserPIN)
	sa.Kill()
	if _, err := ctxA.GetSlotList(true); !isRV(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Fatalf("killed cluster: GetSlotList err %v, want CKR_DEVICE_ERROR", err)
	}
	testhsm.FindSlot(t, ctxB, b.Label)
}

func TestServerKillAndRestart(t *testing.T) {
	tok := testhsm.NewToken(t, "killme")
	srv := testhsm.StartServer(t, tok)
	ctx, sh := testhsm.OpenSession(t, srv.ClientModule, srv.Env(), tok.Label, tok.UserPIN)
	key, pub := genKey(t, ctx, sh, "k")
	slot := testhsm.FindSlot(t, ctx, tok.Label)

	srv.Kill()
	if _, err := sign(ctx, sh, key, "x"); !isRV(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Fatalf("sign after kill: %v, want CKR_DEVICE_ERROR", err)
	}
	srv.Restart(t)
	// The client does not reconnect by itself: the old module instance stays
	// broken until it is finalized and initialized again.
	if _, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION); !isRV(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Fatalf("open session after restart without re-init: %v, want CKR_DEVICE_ERROR", err)
	}
	if err := ctx.Finalize(); err != nil {
		t.Fatalf("Finalize: %v", err)
	}
	if err := ctx.Initialize(); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	sh, err := ctx.OpenSession(testhsm.FindSlot(t, ctx, tok.Label), pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctx.Login(sh, pkcs11.CKU_USER, tok.UserPIN); err != nil {
		t.Fatal(err)
	}
	key = findKey(t, ctx, sh, "k")
	sig, err := sign(ctx, sh, key, "after restart")
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, pub, "after restart", sig)
}

func TestServerStopBlocksUntilContinue(t *testing.T) {
	tok := testhsm.NewToken(t, "frozen")
	srv := testhsm.StartServer(t, tok)
	ctx, sh := testhsm.OpenSession(t, srv.ClientModule, srv.Env(), tok.Label, tok.UserPIN)
	key, pub := genKey(t, ctx, sh, "k")

	srv.Stop()
	type result struct {
		sig []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		sig, err := sign(ctx, sh, key, "frozen")
		done <- result{sig, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("call on a stopped server returned: %v", r.err)
	case <-time.After(300 * time.Millisecond):
	}
	srv.Continue()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		mustVerify(t, pub, "frozen", r.sig)
	case <-time.After(10 * time.Second):
		t.Fatal("call still blocked after Continue")
	}
}

// A test that ends while its server is stopped must not block in cleanup.
func TestStoppedServerDoesNotBlockCleanup(t *testing.T) {
	tok := testhsm.NewToken(t, "left-stopped")
	srv := testhsm.StartServer(t, tok)
	testhsm.OpenSession(t, srv.ClientModule, srv.Env(), tok.Label, tok.UserPIN)
	srv.Stop()
}
