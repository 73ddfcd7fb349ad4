// Package module shares PKCS#11 libraries within a process. A library may be
// initialized only once per process (C_Initialize twice returns
// CKR_CRYPTOKI_ALREADY_INITIALIZED), so every user of the same resolved path gets
// the same reference-counted *Module, and the library is finalized only when the
// last user releases it.
package module

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/miekg/pkcs11"
)

// ErrNotFound reports a library path that does not exist or cannot be loaded.
var ErrNotFound = errors.New("PKCS#11 module not found")

// Module is one loaded and initialized PKCS#11 library.
type Module struct {
	path string
	env  map[string]string

	mu          sync.RWMutex // guards ctx and generation; Reinit holds it for writing
	ctx         *pkcs11.Ctx
	generation  uint64
	initialized bool
	refs        int // guarded by registryMu
}

var (
	registryMu sync.Mutex
	registry   = map[string]*Module{}
	// envMu serializes environment changes around C_Initialize, which is when
	// libraries such as p11-kit-client and SoftHSM read their settings.
	envMu sync.Mutex
)

// Acquire loads and initializes the library at path, or shares the instance
// already loaded from the same resolved path. env is set in the process
// environment while the library initializes (and restored afterwards); a
// shared instance keeps the environment of its first user.
//
// When the library loads but C_Initialize fails (say, its server is down),
// Acquire returns the module together with the error: the caller owns a
// reference either way and may call Reinit later to try again.
func Acquire(path string, env map[string]string) (*Module, error) {
	resolved, err := resolve(path)
	if err != nil {
		return nil, err
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if m, ok := registry[resolved]; ok {
		m.refs++
		return m, nil
	}
	ctx := withEnv(env, func() *pkcs11.Ctx { return pkcs11.New(resolved) })
	if ctx == nil {
		return nil, fmt.Errorf("%w: %s: not a loadable PKCS#11 library", ErrNotFound, resolved)
	}
	m := &Module{path: resolved, env: env, ctx: ctx, refs: 1}
	registry[resolved] = m
	if err := m.initialize(); err != nil {
		return m, fmt.Errorf("initialize %s: %w", resolved, err)
	}
	m.initialized = true
	return m, nil
}

func resolve(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%w: empty path", ErrNotFound)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrNotFound, path, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrNotFound, path, errors.Unwrap(err))
	}
	if info, err := os.Stat(resolved); err != nil || info.IsDir() {
		return "", fmt.Errorf("%w: %s: not a file", ErrNotFound, path)
	}
	return resolved, nil
}

// initialize runs C_Initialize with the module's environment in place.
// CKR_CRYPTOKI_ALREADY_INITIALIZED (someone else in the process initialized
// the library) counts as success.
func (m *Module) initialize() error {
	err := withEnv(m.env, func() error { return m.ctx.Initialize() })
	if errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return nil
	}
	return err
}

// withEnv runs fn with env set in the process environment. Libraries read
// their settings when loaded (C_GetFunctionList) or initialized.
func withEnv[T any](env map[string]string, fn func() T) T {
	envMu.Lock()
	defer envMu.Unlock()
	restore := setEnv(env)
	defer restore()
	return fn()
}

func setEnv(env map[string]string) (restore func()) {
	type saved struct {
		value string
		set   bool
	}
	old := make(map[string]saved, len(env))
	for k, v := range env {
		prev, ok := os.LookupEnv(k)
		old[k] = saved{prev, ok}
		os.Setenv(k, v)
	}
	return func() {
		for k, s := range old {
			if s.set {
				os.Setenv(k, s.value)
			} else {
				os.Unsetenv(k)
			}
		}
	}
}

// Path returns the resolved library path.
func (m *Module) Path() string { return m.path }

// Ctx returns the library context and its generation. Handles obtained under
// one generation are meaningless under another.
func (m *Module) Ctx() (*pkcs11.Ctx, uint64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.ctx, m.generation
}

// Generation returns the number of times the library was re-initialized.
func (m *Module) Generation() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.generation
}

// Reinit finalizes and initializes the library again, which is the only way
// to recover from a lost connection (p11-kit-client, network HSMs). It does
// nothing when the module was already re-initialized since generation seen,
// so concurrent callers that saw the same failure reinitialize once.
func (m *Module) Reinit(seen uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.generation != seen {
		return nil
	}
	if m.initialized {
		_ = m.ctx.Finalize() // a dead connection may refuse to finalize; initialize decides
	}
	m.generation++
	err := m.initialize()
	m.initialized = err == nil
	return err
}

// Release drops one reference; the last one finalizes the library. The
// library stays mapped: SoftHSM and other OpenSSL-based modules leave
// process-wide handlers behind that crash the process after dlclose.
func (m *Module) Release() {
	registryMu.Lock()
	defer registryMu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(registry, m.path)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.initialized {
		_ = m.ctx.Finalize()
	}
	m.initialized = false
}
