package hsmclient

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/personapass/hsm/hsmclient/internal/module"
	"github.com/personapass/hsm/hsmclient/internal/pool"
)

// session is one open, logged-in PKCS#11 session.
type session struct {
	ctx *pkcs11.Ctx
	h   pkcs11.SessionHandle
	gen uint64 // module generation the handle belongs to
}

type handleKey struct {
	label string
	id    string // hex CKA_ID, empty to match any
	class uint
}

type cachedHandle struct {
	h   pkcs11.ObjectHandle
	gen uint64
}

// cluster is one HSM cluster: a module, a slot, a login, a session pool, a
// cache of object handles and a circuit breaker.
type cluster struct {
	name     string
	cfg      ClusterConfig
	settings Config
	pin      string
	mod      *module.Module
	pool     *pool.Pool[*session]
	log      *slog.Logger
	inflight atomic.Int64 // PKCS#11 calls running on this cluster

	connMu  sync.Mutex // guards slot, login state and reconnection
	slot    uint
	anchor  *session // holds the login; see login
	authErr error    // a refused PIN: terminal, never retried

	handles sync.Map // handleKey -> cachedHandle

	stateMu      sync.Mutex
	state        State
	failures     int
	lastErr      error
	downSince    time.Time
	probeLatency time.Duration
	probing      bool
	stop         chan struct{}
	probeDone    sync.WaitGroup
}

// openCluster loads the module, finds the token, logs in once and builds the pool.
// A configuration mistake (missing module, unknown token) is returned as an error;
// an unreachable cluster or a refused PIN comes back as a cluster that is down.
func openCluster(ctx context.Context, cfg ClusterConfig, settings Config) (*cluster, error) {
	pin, err := cfg.readPIN()
	if err != nil {
		return nil, err
	}
	c := &cluster{
		name: cfg.Name, cfg: cfg, settings: settings, pin: pin,
		log: settings.Logger.With("cluster", cfg.Name), state: StateUp, stop: make(chan struct{}),
	}
	mod, initErr := module.Acquire(cfg.Module, cfg.ModuleEnv)
	if errors.Is(initErr, ErrModuleNotFound) {
		return nil, fmt.Errorf("cluster %q: %w", cfg.Name, initErr)
	}
	c.mod = mod
	maxSessions := poolSize(settings.Pool.MaxSessions, pkcs11.CK_EFFECTIVELY_INFINITE)
	if initErr == nil {
		var tokenMax uint
		tokenMax, err = c.resolveSlot()
		if errors.Is(err, ErrTokenNotFound) {
			c.mod.Release()
			return nil, err
		}
		maxSessions = poolSize(settings.Pool.MaxSessions, tokenMax)
	} else {
		err = initErr
	}
	c.pool = pool.New(maxSessions, settings.Pool.MaxIdle, c.openSession, c.closeSession)
	if err == nil {
		_, err = call(ctx, c, time.Duration(settings.OperationTimeout), func(*session) (struct{}, error) { return struct{}{}, nil })
	}
	if err != nil {
		if classify(err) == classAuth {
			c.recordAuthFailure(err)
		} else {
			c.markDown(err)
		}
	}
	return c, nil
}

// poolSize returns how many pooled sessions fit in the configured maximum
// and the token's MaxSessionCount, which may be 0 (CK_EFFECTIVELY_INFINITE,
// as SoftHSM reports), unknown (CK_UNAVAILABLE_INFORMATION) or a real limit.
// Both limits count the login anchor session too, so the pool gets one
// session less (but at least one).
func poolSize(configured int, tokenMax uint) int {
	limit := configured
	if tokenMax != pkcs11.CK_EFFECTIVELY_INFINITE && tokenMax != pkcs11.CK_UNAVAILABLE_INFORMATION {
		limit = min(limit, int(min(tokenMax, uint(configured))))
	}
	return max(1, limit-1)
}

// resolveSlot finds the configured token and returns its MaxSessionCount.
func (c *cluster) resolveSlot() (uint, error) {
	p, _ := c.mod.Ctx()
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("cluster %q: list slots: %w", c.name, err)
	}
	var labels []string
	for _, slot := range slots {
		info, err := p.GetTokenInfo(slot)
		if err != nil {
			return 0, fmt.Errorf("cluster %q: token info of slot %d: %w", c.name, slot, err)
		}
		label := strings.TrimRight(info.Label, " \x00")
		labels = append(labels, fmt.Sprintf("%q (slot %d)", label, slot))
		if (c.cfg.Slot != nil && *c.cfg.Slot == slot) || (c.cfg.Slot == nil && label == c.cfg.TokenLabel) {
			c.connMu.Lock()
			c.slot = slot
			c.connMu.Unlock()
			return info.MaxSessionCount, nil
		}
	}
	sort.Strings(labels)
	want := fmt.Sprintf("token_label %q", c.cfg.TokenLabel)
	if c.cfg.Slot != nil {
		want = fmt.Sprintf("slot %d", *c.cfg.Slot)
	}
	found := "none"
	if len(labels) > 0 {
		found = strings.Join(labels, ", ")
	}
	return 0, fmt.Errorf("%w: cluster %q: no token with %s in %s; tokens found: %s", ErrTokenNotFound, c.name, want, c.mod.Path(), found)
}

// openSession opens a read-write session (CloudHSM supports no read-only
// ones) once the application is logged in.
func (c *cluster) openSession(context.Context) (*session, error) {
	p, gen := c.mod.Ctx()
	if err := c.login(p, gen); err != nil {
		return nil, err
	}
	c.connMu.Lock()
	slot := c.slot
	c.connMu.Unlock()
	h, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	return &session{ctx: p, h: h, gen: gen}, nil
}

// login logs the crypto user in once per module generation, on an anchor
// session the cluster keeps open and never uses for work. Login state belongs
// to the application, not to a session, but closing the last session logs
// the application out; the anchor makes sure pooled sessions can come and go.
// "Already logged in" is success. A refused PIN is remembered and never
// tried again: HSMs lock users out after repeated failures.
func (c *cluster) login(p *pkcs11.Ctx, gen uint64) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.authErr != nil {
		return c.authErr
	}
	if c.anchor != nil && c.anchor.gen == gen {
		return nil
	}
	h, err := p.OpenSession(c.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	err = p.Login(h, pkcs11.CKU_USER, c.pin)
	if err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		_ = p.CloseSession(h)
		err = mapTokenError(err)
		if classify(err) == classAuth {
			c.authErr = fmt.Errorf("login: %w", err)
			c.log.Error("login failed; the PIN will not be tried again", "error", err)
			return c.authErr
		}
		return fmt.Errorf("login: %w", err)
	}
	c.anchor = &session{ctx: p, h: h, gen: gen}
	return nil
}

// dropLogin forgets the anchor session, so the next session logs in again.
func (c *cluster) dropLogin() {
	c.connMu.Lock()
	anchor := c.anchor
	c.anchor = nil
	c.connMu.Unlock()
	if anchor != nil {
		c.closeSession(anchor)
	}
}

// closeSession closes a session unless its module was re-initialized since,
// in which case the handle is already gone (and its number may be reused).
func (c *cluster) closeSession(s *session) {
	if s.gen == c.mod.Generation() {
		_ = s.ctx.CloseSession(s.h)
	}
}

// call runs fn on a pooled session within timeout and the caller's context.
// Acquiring the session (which may open one) and the PKCS#11 calls run on
// their own goroutine because PKCS#11 calls cannot be cancelled: when the
// deadline passes the caller gets ErrTimeout at once, while the goroutine
// keeps its session until the token answers. The pool's size bounds such
// goroutines. A session whose call failed is closed, never reused: it may
// hold an unfinished operation.
func call[T any](ctx context.Context, c *cluster, timeout time.Duration, fn func(*session) (T, error)) (T, error) {
	var zero T
	c.connMu.Lock()
	authErr := c.authErr
	c.connMu.Unlock()
	if authErr != nil {
		return zero, authErr
	}
	opCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	var acquired atomic.Bool
	c.inflight.Add(1)
	go func() {
		defer c.inflight.Add(-1)
		lease, err := c.acquireCurrent(opCtx)
		if err != nil {
			done <- result{err: acquireError(ctx, opCtx, timeout, err)}
			return
		}
		acquired.Store(true)
		if opCtx.Err() != nil { // the caller gave up while the session was opening
			lease.Release()
			done <- result{err: acquireError(ctx, opCtx, timeout, opCtx.Err())}
			return
		}
		v, err := fn(lease.Value)
		if err != nil {
			lease.Discard()
		} else {
			lease.Release()
		}
		done <- result{v, mapTokenError(err)}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-opCtx.Done():
		switch {
		case !acquired.Load():
			return zero, acquireError(ctx, opCtx, timeout, opCtx.Err())
		case ctx.Err() != nil:
			return zero, callerGaveUp(ctx.Err())
		}
		return zero, fmt.Errorf("%w: no answer within %s", ErrTimeout, timeout)
	}
}

// acquireCurrent acquires a pooled session opened under the module's current
// generation, discarding idle ones left from before a re-initialization (which
// another cluster sharing the module may have done).
func (c *cluster) acquireCurrent(ctx context.Context) (*pool.Lease[*session], error) {
	for {
		lease, err := c.pool.Acquire(ctx)
		if err != nil || lease.Value.gen == c.mod.Generation() {
			return lease, err
		}
		lease.Discard()
	}
}

// acquireError explains why no session could be had: the caller's context
// ended (its error, wrapped with ErrPoolExhausted), the operation timeout
// passed, the pool closed, or opening a session failed.
func acquireError(ctx, opCtx context.Context, timeout time.Duration, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %w", ErrPoolExhausted, ctx.Err())
	case opCtx.Err() != nil:
		return fmt.Errorf("%w: no session free within %s: %w", ErrTimeout, timeout, ErrPoolExhausted)
	case errors.Is(err, pool.ErrClosed):
		return ErrClosed
	}
	return mapTokenError(err)
}

// findKey returns the handle of the key with this label (and CKA_ID, when
// id is not empty) and class, from the cache when it was found under the
// current module generation. Two keys that match are an error, never a guess.
func (c *cluster) findKey(s *session, label, id string, class uint) (pkcs11.ObjectHandle, error) {
	key := handleKey{label, id, class}
	if v, ok := c.handles.Load(key); ok && v.(cachedHandle).gen == s.gen {
		return v.(cachedHandle).h, nil
	}
	template := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	if id != "" {
		raw, err := hex.DecodeString(id)
		if err != nil {
			return 0, fmt.Errorf("%w: key ID %q is not hex", ErrInvalidInput, id)
		}
		template = append(template, pkcs11.NewAttribute(pkcs11.CKA_ID, raw))
	}
	handles, err := findObjects(s, template, 2)
	if err != nil {
		return 0, err
	}
	switch len(handles) {
	case 0:
		if id != "" {
			return 0, fmt.Errorf("%w: no %s labelled %q with ID %s (was the key replaced?)", ErrKeyNotFound, className(class), label, id)
		}
		return 0, missingKeyError(s, label, class)
	case 2:
		return 0, fmt.Errorf("%w: more than one %s is labelled %q; delete the duplicates", ErrKeyExists, className(class), label)
	}
	c.handles.Store(key, cachedHandle{handles[0], s.gen})
	return handles[0], nil
}

// missingKeyError explains why no object of class carries label: the label
// belongs to a key of another kind (ErrWrongKeyType), or to nothing (ErrKeyNotFound).
func missingKeyError(s *session, label string, class uint) error {
	other, err := findObjects(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}, 1)
	if err == nil && len(other) > 0 {
		return fmt.Errorf("%w: %q is not a %s", ErrWrongKeyType, label, className(class))
	}
	return fmt.Errorf("%w: no %s labelled %q", ErrKeyNotFound, className(class), label)
}

// forgetKey drops the cached handles of a label, e.g. after the key was deleted.
func (c *cluster) forgetKey(label string) {
	c.handles.Range(func(k, _ any) bool {
		if k.(handleKey).label == label {
			c.handles.Delete(k)
		}
		return true
	})
}

// withKey runs fn with the key's handle, finding it again once when the token
// says the cached handle went stale (after a re-login or re-initialization).
func withKey[T any](c *cluster, s *session, label, id string, class uint, fn func(pkcs11.ObjectHandle) (T, error)) (T, error) {
	h, err := c.findKey(s, label, id, class)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := fn(h)
	if !isHandleInvalid(err) {
		return v, err
	}
	c.handles.Delete(handleKey{label, id, class})
	if h, err = c.findKey(s, label, id, class); err != nil {
		return v, err
	}
	return fn(h)
}

// findObjects returns up to max handles matching template (all when max is 0).
func findObjects(s *session, template []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	if err := s.ctx.FindObjectsInit(s.h, template); err != nil {
		return nil, fmt.Errorf("find objects: %w", err)
	}
	var found []pkcs11.ObjectHandle
	for {
		batch := 64
		if max > 0 {
			batch = max - len(found)
		}
		handles, _, err := s.ctx.FindObjects(s.h, batch)
		if err != nil {
			_ = s.ctx.FindObjectsFinal(s.h)
			return nil, fmt.Errorf("find objects: %w", err)
		}
		found = append(found, handles...)
		if len(handles) == 0 || (max > 0 && len(found) >= max) {
			break
		}
	}
	if err := s.ctx.FindObjectsFinal(s.h); err != nil {
		return nil, fmt.Errorf("find objects: %w", err)
	}
	return found, nil
}

func className(class uint) string {
	switch class {
	case pkcs11.CKO_PRIVATE_KEY:
		return "private key"
	case pkcs11.CKO_PUBLIC_KEY:
		return "public key"
	case pkcs11.CKO_SECRET_KEY:
		return "secret key"
	}
	return fmt.Sprintf("object of class %#x", class)
}
