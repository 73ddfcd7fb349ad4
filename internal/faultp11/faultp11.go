// Package faultp11 builds and controls faultp11, a PKCS#11 module (C source in
// csrc/faultp11.c) that forwards every call to a real module and injects latency
// and faults, so that tests can simulate a slow, busy, hung or failed HSM
// cluster.
//
// A module is configured through its environment, which PKCS#11 clients set
// just before loading and initializing it:
//
//   - FAULTP11_TARGET, the real module, is read at the first
//     C_GetFunctionList (with miekg/pkcs11: in pkcs11.New), once per loaded
//     copy.
//   - FAULTP11_CONTROL and FAULTP11_LATENCY_US are read at every
//     C_Initialize.
//
// The control file selects the mode (see SetMode); the module re-reads it at
// most every 20 ms. Each copy of the library under a different file name is
// an independent cluster in one process: use one Module per cluster.
package faultp11

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

//go:embed csrc/faultp11.c
var source []byte

// Modes accepted by SetMode, besides Busy(n).
const (
	// ModeOK forwards every call.
	ModeOK = "ok"
	// ModeDown makes every call except C_Initialize and C_Finalize return
	// CKR_DEVICE_ERROR.
	ModeDown = "down"
	// ModeHang blocks every call except C_Initialize and C_Finalize while the
	// mode stays "hang"; blocked calls then proceed.
	ModeHang = "hang"
)

// Busy returns the mode in which the next n crypto calls (C_Sign,
// C_SignUpdate, C_SignFinal, C_Verify, C_Encrypt, C_Decrypt,
// C_GenerateRandom, C_GenerateKey, C_GenerateKeyPair, C_FindObjects; length
// queries excluded) return CKR_FUNCTION_FAILED, as a busy CloudHSM does.
// Setting it again re-arms the count.
func Busy(n int) string { return "busy " + strconv.Itoa(n) }

// settle is how long SetMode waits so that every module sees the new mode: the
// module polls the control file at most every 20 ms.
const settle = 30 * time.Millisecond

// Build compiles csrc/faultp11.c with gcc into dir and returns the path of the
// shared library, dir/faultp11.so.
func Build(dir string) (string, error) {
	src := filepath.Join(dir, "faultp11.c")
	if err := os.WriteFile(src, source, 0o644); err != nil {
		return "", err
	}
	so := filepath.Join(dir, "faultp11.so")
	cmd := exec.Command("gcc", "-shared", "-fPIC", "-O2", "-Wall", "-fvisibility=hidden",
		"-o", so, src, "-ldl", "-lpthread")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("faultp11: gcc: %v\n%s", err, out)
	}
	return so, nil
}

// Module is one faultp11 library in front of one target module.
type Module struct {
	// Path is the faultp11 library to load, unique to this Module.
	Path string
	// Target is the real module the calls are forwarded to.
	Target string
	// Control is the control file; it starts in ModeOK.
	Control string
	// Stats is the file where the module writes its Counters.
	Stats string
	// Latency is added to every crypto call.
	Latency time.Duration
}

// New builds a faultp11 library into dir, which must not hold another
// Module, and returns a Module forwarding to target with the given latency.
func New(dir, target string, latency time.Duration) (*Module, error) {
	so, err := Build(dir)
	if err != nil {
		return nil, err
	}
	m := &Module{Path: so, Target: target, Control: filepath.Join(dir, "control"), Stats: filepath.Join(dir, "stats"), Latency: latency}
	if err := os.WriteFile(m.Control, []byte(ModeOK), 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

// Env returns the environment variables to set before loading (Target) and
// before each C_Initialize (Control, Latency) of m.Path.
func (m *Module) Env() map[string]string {
	return map[string]string{
		"FAULTP11_TARGET":     m.Target,
		"FAULTP11_CONTROL":    m.Control,
		"FAULTP11_LATENCY_US": strconv.FormatInt(m.Latency.Microseconds(), 10),
		"FAULTP11_STATS":      m.Stats,
	}
}

// Counters are what the module saw pass through to the token.
type Counters struct {
	Sessions int // sessions open now
	Peak     int // most sessions open at once since C_Initialize
	Logins   int // C_Login calls, whatever their result
}

// ReadCounters reads the counters the module keeps in its Stats file.
func (m *Module) ReadCounters() (Counters, error) {
	var c Counters
	data, err := os.ReadFile(m.Stats)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil // nothing counted yet
	}
	if err != nil {
		return c, err
	}
	_, err = fmt.Sscanf(string(data), "sessions %d\npeak %d\nlogins %d\n", &c.Sessions, &c.Peak, &c.Logins)
	return c, err
}

// SetMode switches m to mode; see SetMode.
func (m *Module) SetMode(mode string) error { return SetMode(m.Control, mode) }

// SetMode atomically replaces the control file with mode (ModeOK, ModeDown,
// ModeHang or Busy(n)) and returns once every module using it sees the change.
func SetMode(control, mode string) error {
	tmp := control + ".tmp"
	if err := os.WriteFile(tmp, []byte(mode+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, control); err != nil {
		return err
	}
	time.Sleep(settle)
	return nil
}
