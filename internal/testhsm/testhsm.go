// Package testhsm gives tests real PKCS#11 tokens and servers: SoftHSM tokens
// in temporary directories, "restored backups" of them, p11-kit servers that
// expose a token on a Unix socket (a stand-in for a network HSM cluster that
// can be killed, restarted or frozen), and faultp11 modules for injected
// latency and faults.
//
// PKCS#11 libraries read their environment (SOFTHSM2_CONF,
// P11_KIT_SERVER_ADDRESS, FAULTP11_*) at C_Initialize, and a process loads a
// library path only once. So every Token and Server comes with its own copy of
// the library under a unique path, and its Env must be set in the process
// environment just before that copy's C_Initialize (t.Setenv in a test that
// is not parallel, or os.Setenv under a lock).
//
// All helpers fail the test (t.Fatalf) when something is missing; they never
// skip. scripts/deps.sh installs what they need.
package testhsm

import (
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/personapass/hsm/internal/faultp11"
)

// SoftHSMModule returns the path of the system's libsofthsm2.so.
func SoftHSMModule(t testing.TB) string {
	t.Helper()
	return findLib(t, "libsofthsm2.so", "/usr/lib/softhsm", "/usr/lib/%s/softhsm", "/usr/local/lib/softhsm")
}

// P11KitClientModule returns the path of the system's p11-kit-client.so.
func P11KitClientModule(t testing.TB) string {
	t.Helper()
	return findLib(t, "p11-kit-client.so", "/usr/lib/%s/pkcs11", "/usr/lib/pkcs11", "/usr/lib64/pkcs11")
}

// findLib looks for name in dirs, where %s stands for the multiarch triplet.
func findLib(t testing.TB, name string, dirs ...string) string {
	t.Helper()
	triplets := []string{"*"}
	if out, err := exec.Command("dpkg-architecture", "-qDEB_HOST_MULTIARCH").Output(); err == nil {
		triplets = []string{strings.TrimSpace(string(out)), "*"}
	}
	for _, d := range dirs {
		for _, tr := range triplets {
			matches, _ := filepath.Glob(filepath.Join(strings.ReplaceAll(d, "%s", tr), name))
			if len(matches) > 0 {
				return matches[0]
			}
		}
	}
	t.Fatalf("testhsm: %s not found in %v; run scripts/deps.sh", name, dirs)
	return ""
}

// Token is an initialized SoftHSM token in its own directory, served by its
// own copy of libsofthsm2.so.
type Token struct {
	// Dir is the temporary directory holding everything below.
	Dir string
	// ConfPath is the softhsm2.conf that points at Dir/tokens.
	ConfPath string
	// Label is the token label.
	Label string
	// UserPIN is the normal user's PIN (a random test value).
	UserPIN string
	// SOPIN is the security officer's PIN (a random test value).
	SOPIN string
	// Module is this token's private copy of libsofthsm2.so.
	Module string
}

// Env returns the environment to set before C_Initialize of tok.Module.
func (tok *Token) Env() map[string]string {
	return map[string]string{"SOFTHSM2_CONF": tok.ConfPath}
}

// NewToken creates and initializes a SoftHSM token labelled label, removed
// when the test ends.
func NewToken(t testing.TB, label string) *Token {
	t.Helper()
	tok := newTokenDir(t, label, randomDigits(t, 8), randomDigits(t, 8))
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label,
		"--so-pin", tok.SOPIN, "--pin", tok.UserPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+tok.ConfPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testhsm: softhsm2-util --init-token: %v\n%s", err, out)
	}
	return tok
}

// CopyTo returns a new Token whose token directory is a byte copy of tok's,
// like a cluster restored from a backup: same label, PINs and objects (those
// that exist now, nothing created later), with its own configuration and
// module copy. The token label cannot change: it is stored in the copied files.
func (tok *Token) CopyTo(t testing.TB) *Token {
	t.Helper()
	c := newTokenDir(t, tok.Label, tok.UserPIN, tok.SOPIN)
	src := filepath.Join(tok.Dir, "tokens")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		dst := filepath.Join(c.Dir, "tokens", rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		return copyFile(path, dst)
	})
	if err != nil {
		t.Fatalf("testhsm: copying token %s: %v", tok.Label, err)
	}
	return c
}

// newTokenDir makes the directory, configuration and module copy of a token.
func newTokenDir(t testing.TB, label, userPIN, soPIN string) *Token {
	t.Helper()
	dir := t.TempDir()
	tok := &Token{
		Dir:      dir,
		ConfPath: filepath.Join(dir, "softhsm2.conf"),
		Label:    label,
		UserPIN:  userPIN,
		SOPIN:    soPIN,
		Module:   filepath.Join(dir, "libsofthsm2.so"),
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
		filepath.Join(dir, "tokens"))
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatalf("testhsm: %v", err)
	}
	if err := os.WriteFile(tok.ConfPath, []byte(conf), 0o600); err != nil {
		t.Fatalf("testhsm: %v", err)
	}
	if err := copyFile(SoftHSMModule(t), tok.Module); err != nil {
		t.Fatalf("testhsm: copying libsofthsm2.so: %v", err)
	}
	return tok
}

// FaultModule builds a faultp11 module in front of target (for example a
// Token's Module or a Server's ClientModule) with the given latency per crypto
// call. Set its Env, plus the target's, before loading and initializing it.
// C_Finalize is never faulted, but other cleanup calls block in ModeHang:
// set ModeOK before the test ends if cleanup calls into the module.
func FaultModule(t testing.TB, target string, latency time.Duration) *faultp11.Module {
	t.Helper()
	m, err := faultp11.New(t.TempDir(), target, latency)
	if err != nil {
		t.Fatalf("testhsm: %v", err)
	}
	return m
}

// copyFile copies src (following symlinks) to a new file dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// randomDigits returns n random decimal digits.
func randomDigits(t testing.TB, n int) string {
	t.Helper()
	var b strings.Builder
	for range n {
		d, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			t.Fatalf("testhsm: %v", err)
		}
		b.WriteByte(byte('0' + d.Int64()))
	}
	return b.String()
}
