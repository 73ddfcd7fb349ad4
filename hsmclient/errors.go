package hsmclient

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/personapass/hsm/hsmclient/internal/module"
)

// Sentinel errors. Every error the client returns wraps one of these (test with
// errors.Is) and, when the token answered, the pkcs11.Error code as well (test
// with errors.As into a pkcs11.Error).
var (
	// ErrInvalidConfig reports a configuration problem; the message names the field or file.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrModuleNotFound reports a PKCS#11 library path that does not exist or cannot be loaded.
	ErrModuleNotFound = module.ErrNotFound
	// ErrTokenNotFound reports a token label or slot that the module does not offer.
	ErrTokenNotFound = errors.New("token not found")
	// ErrPINIncorrect reports a rejected PIN. The login is never retried.
	ErrPINIncorrect = errors.New("PIN incorrect")
	// ErrPINLocked reports a PIN the token has locked (or expired); an administrator must act.
	ErrPINLocked = errors.New("PIN locked")
	// ErrKeyNotFound reports that no key carries the requested label.
	ErrKeyNotFound = errors.New("key not found")
	// ErrKeyExists reports a key generation whose label is already taken.
	ErrKeyExists = errors.New("key label already in use")
	// ErrWrongKeyType reports a key used with an algorithm that does not fit it.
	ErrWrongKeyType = errors.New("wrong key type")
	// ErrUnsupportedMechanism reports an algorithm or option the client or token does not support.
	ErrUnsupportedMechanism = errors.New("unsupported mechanism")
	// ErrInvalidInput reports empty, oversized or malformed input, rejected before it reaches the token.
	ErrInvalidInput = errors.New("invalid input")
	// ErrAuthenticationFailed reports AES-GCM ciphertext that failed authentication.
	ErrAuthenticationFailed = errors.New("message authentication failed")
	// ErrPoolExhausted reports that no session became free before the context ended.
	// Such errors also wrap the context's error.
	ErrPoolExhausted = errors.New("session pool exhausted")
	// ErrClusterUnavailable reports that no cluster could serve the operation.
	ErrClusterUnavailable = errors.New("cluster unavailable")
	// ErrTimeout reports a PKCS#11 call that did not answer within the operation timeout.
	ErrTimeout = errors.New("operation timed out")
	// ErrClosed reports use of a client after Close.
	ErrClosed = errors.New("client closed")
)

// errorClass says what an error means for the cluster that produced it.
type errorClass int

const (
	// classCaller: the request itself is at fault (bad input, unknown key); no other cluster would do better.
	classCaller errorClass = iota
	// classBusy: the HSM is throttling; retry on the same cluster after a pause.
	classBusy
	// classCluster: the cluster failed; count it against the cluster and try the next one.
	classCluster
	// classAuth: the PIN was refused; the cluster is unusable until reconfigured, never retried.
	classAuth
)

// pkcs11Code returns the PKCS#11 return code carried by err, if any.
func pkcs11Code(err error) (uint, bool) {
	var perr pkcs11.Error
	if errors.As(err, &perr) {
		return uint(perr), true
	}
	return 0, false
}

// classify decides whether err is the caller's fault, throttling, a cluster failure or an auth failure.
func classify(err error) errorClass {
	switch {
	case errors.Is(err, ErrPINIncorrect), errors.Is(err, ErrPINLocked):
		return classAuth
	case errors.Is(err, ErrTimeout), errors.Is(err, ErrClusterUnavailable), errors.Is(err, ErrPoolExhausted):
		return classCluster
	}
	code, ok := pkcs11Code(err)
	if !ok {
		return classCaller
	}
	switch code {
	case pkcs11.CKR_FUNCTION_FAILED:
		return classBusy
	case pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_MEMORY,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_SLOT_ID_INVALID, pkcs11.CKR_HOST_MEMORY:
		return classCluster
	}
	return classCaller
}

// needsReinit reports whether err means the module's connection is gone, so
// only finalizing and initializing the module again can bring it back. A
// token that disappeared (p11-kit-client lists no tokens while its server is
// down) counts too.
func needsReinit(err error) bool {
	if errors.Is(err, ErrTokenNotFound) {
		return true
	}
	code, ok := pkcs11Code(err)
	if !ok {
		return false
	}
	switch code {
	case pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_SLOT_ID_INVALID:
		return true
	}
	return false
}

// isSessionInvalid reports whether the token no longer knows a pooled session
// (closed by the HSM, e.g. after an idle timeout): worth one retry on a fresh one.
func isSessionInvalid(err error) bool {
	code, ok := pkcs11Code(err)
	return ok && (code == pkcs11.CKR_SESSION_HANDLE_INVALID || code == pkcs11.CKR_SESSION_CLOSED)
}

// isHandleInvalid reports whether the token says a cached object handle is stale.
func isHandleInvalid(err error) bool {
	code, ok := pkcs11Code(err)
	return ok && (code == pkcs11.CKR_KEY_HANDLE_INVALID || code == pkcs11.CKR_OBJECT_HANDLE_INVALID)
}

// mapTokenError attaches the sentinel that matches a PKCS#11 code, keeping the code itself wrapped.
func mapTokenError(err error) error {
	code, ok := pkcs11Code(err)
	if !ok {
		return err
	}
	var sentinel error
	switch code {
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE:
		sentinel = ErrPINIncorrect
	case pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED:
		sentinel = ErrPINLocked
	case pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID, pkcs11.CKR_FUNCTION_NOT_SUPPORTED,
		pkcs11.CKR_ARGUMENTS_BAD: // the client validates its own arguments; tokens answer this to mechanism parameters they lack (SoftHSM: OAEP with SHA-256)
		sentinel = ErrUnsupportedMechanism
	case pkcs11.CKR_KEY_TYPE_INCONSISTENT, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED:
		sentinel = ErrWrongKeyType
	case pkcs11.CKR_DATA_LEN_RANGE, pkcs11.CKR_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE:
		sentinel = ErrInvalidInput
	default:
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// OpError describes a failed operation: which cluster, which operation, and why.
type OpError struct {
	Cluster string // cluster name from the configuration, empty when no cluster was tried
	Op      string // operation, e.g. "sign" or "generate-key"
	Err     error  // the underlying error; wraps one of the sentinels
}

// Error implements error.
func (e *OpError) Error() string {
	if e.Cluster == "" {
		return fmt.Sprintf("hsmclient: %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("hsmclient: cluster %q: %s: %v", e.Cluster, e.Op, e.Err)
}

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }

// errorList joins errors on one line (errors.Join uses newlines, which break
// one-line logs and CLI messages) while keeping each one for errors.Is and errors.As.
type errorList []error

func (l errorList) Error() string {
	msgs := make([]string, len(l))
	for i, err := range l {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (l errorList) Unwrap() []error { return l }
