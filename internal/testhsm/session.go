package testhsm

import (
	"testing"

	"github.com/miekg/pkcs11"
)

// OpenSession sets env in the process environment (t.Setenv, so not in
// parallel tests), loads and initializes module, and returns a read-write
// session logged in as the user on the token labelled label. The module is
// finalized when the test ends. Use it to seed or inspect tokens.
func OpenSession(t testing.TB, module string, env map[string]string, label, pin string) (*pkcs11.Ctx, pkcs11.SessionHandle) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	ctx := pkcs11.New(module)
	if ctx == nil {
		t.Fatalf("testhsm: cannot load PKCS#11 module %s", module)
	}
	if err := ctx.Initialize(); err != nil {
		t.Fatalf("testhsm: C_Initialize %s: %v", module, err)
	}
	t.Cleanup(func() { _ = ctx.Finalize() })
	slot := FindSlot(t, ctx, label)
	sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatalf("testhsm: C_OpenSession: %v", err)
	}
	if err := ctx.Login(sh, pkcs11.CKU_USER, pin); err != nil {
		t.Fatalf("testhsm: C_Login on %s: %v", label, err)
	}
	return ctx, sh
}

// FindSlot returns the slot holding the token labelled label.
func FindSlot(t testing.TB, ctx *pkcs11.Ctx, label string) uint {
	t.Helper()
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		t.Fatalf("testhsm: C_GetSlotList: %v", err)
	}
	for _, s := range slots {
		if info, err := ctx.GetTokenInfo(s); err == nil && info.Label == label {
			return s
		}
	}
	t.Fatalf("testhsm: no token labelled %q", label)
	return 0
}
