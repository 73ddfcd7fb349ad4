package module_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/personapass/hsm/hsmclient/internal/module"
	"github.com/personapass/hsm/internal/testhsm"
)

func TestMissingLibrary(t *testing.T) {
	_, err := module.Acquire(filepath.Join(t.TempDir(), "absent.so"), nil)
	require.ErrorIs(t, err, module.ErrNotFound)
	assert.Contains(t, err.Error(), "absent.so")
	_, err = module.Acquire("", nil)
	require.ErrorIs(t, err, module.ErrNotFound)
}

func TestSharedAndReferenceCounted(t *testing.T) {
	tok := testhsm.NewToken(t, "shared")
	a, err := module.Acquire(tok.Module, tok.Env())
	require.NoError(t, err)
	// A symlink resolves to the same library: same instance.
	link := filepath.Join(t.TempDir(), "link.so")
	require.NoError(t, os.Symlink(tok.Module, link))
	b, err := module.Acquire(link, nil)
	require.NoError(t, err)
	assert.Same(t, a, b)

	a.Release()
	p, _ := b.Ctx()
	_, err = p.GetSlotList(true)
	require.NoError(t, err, "releasing one reference must not finalize the library for the other")
	b.Release()
	_, err = p.GetSlotList(true)
	require.ErrorIs(t, err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED), "the last release finalizes")

	c, err := module.Acquire(tok.Module, tok.Env())
	require.NoError(t, err, "a finalized library can be acquired again")
	defer c.Release()
	p, _ = c.Ctx()
	slots, err := p.GetSlotList(true)
	require.NoError(t, err)
	assert.NotEmpty(t, slots)
}

func TestToleratesAlreadyInitialized(t *testing.T) {
	tok := testhsm.NewToken(t, "early")
	testhsm.OpenSession(t, tok.Module, tok.Env(), tok.Label, tok.UserPIN) // someone else initialized it
	m, err := module.Acquire(tok.Module, tok.Env())
	require.NoError(t, err)
	defer m.Release()
}

func TestReinitBumpsGenerationOnce(t *testing.T) {
	tok := testhsm.NewToken(t, "reinit")
	m, err := module.Acquire(tok.Module, tok.Env())
	require.NoError(t, err)
	defer m.Release()
	seen := m.Generation()
	require.NoError(t, m.Reinit(seen))
	require.NoError(t, m.Reinit(seen), "a second caller that saw the same failure does nothing")
	assert.Equal(t, seen+1, m.Generation())
	p, _ := m.Ctx()
	_, err = p.GetSlotList(true)
	require.NoError(t, err)
}
