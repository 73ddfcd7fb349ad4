package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/miekg/pkcs11"
	"github.com/spf13/cobra"
)

// devTokenLabel is the label of the token "dev init" creates.
const devTokenLabel = "personapass-primary"

// softHSMSearchPath lists where Debian, Ubuntu, Fedora, Homebrew and source
// installs put libsofthsm2.so. %s stands for the Debian multiarch triplet.
var softHSMSearchPath = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/%s/softhsm/libsofthsm2.so",
	"/usr/lib64/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

func newDevCmd(a *app) *cobra.Command {
	return groupCmd("dev", "Local development helpers", newDevInitCmd(a))
}

func newDevInitCmd(a *app) *cobra.Command {
	var dir, module string
	var force bool
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a local SoftHSM token and DIR/hsmclient.yaml",
		Long: `Creates a SoftHSM token labelled "` + devTokenLabel + `" under DIR for local use:
DIR/softhsm2.conf, DIR/tokens/, DIR/pins/{so,user}.pin (random, mode 0600),
DIR/lib/libsofthsm2.so (a private copy, so each DIR is an independent module)
and DIR/hsmclient.yaml pointing at all of them.

It refuses to overwrite an existing DIR/hsmclient.yaml unless --force is given.
It never destroys a token or its keys: an existing token is reused with its PINs.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfgPath, err := devInit(dir, module, force)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "dev init: token %q ready in %s\nconfiguration: %s\n", devTokenLabel, dir, cfgPath)
			if filepath.Clean(dir) != filepath.Dir(defaultConfigPath) {
				fmt.Fprintf(a.stdout, "use it with: export %s=%s\n", configEnv, cfgPath)
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", filepath.Dir(defaultConfigPath), "`DIR`ectory for the token, PINs and configuration")
	c.Flags().StringVar(&module, "module", "", "`PATH` of libsofthsm2.so to copy, replacing DIR/lib's copy (default: searched in the usual places, copied once)")
	c.Flags().BoolVar(&force, "force", false, "rewrite an existing DIR/hsmclient.yaml (the token and its keys are kept)")
	return c
}

// devInit creates (or completes) a development token under dir and returns
// the path of the configuration it wrote.
func devInit(dir, module string, force bool) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	dir = abs
	cfgPath := filepath.Join(dir, "hsmclient.yaml")
	if _, err := os.Stat(cfgPath); err == nil && !force {
		return "", fmt.Errorf("%s already exists; pass --force to rewrite it (the token and its keys are kept)", cfgPath)
	}
	if module != "" {
		// Before creating anything: a bad --module leaves no trace.
		if err := checkModule(module); err != nil {
			return "", fmt.Errorf("--module: %w", err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "tokens"), filepath.Join(dir, "pins"), filepath.Join(dir, "lib")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", err
		}
	}
	confPath := filepath.Join(dir, "softhsm2.conf")
	conf := fmt.Sprintf("# Written by hsmctl dev init.\ndirectories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
		filepath.Join(dir, "tokens"))
	if err := writeFileAtomic(confPath, []byte(conf), 0o600); err != nil {
		return "", err
	}
	libPath := filepath.Join(dir, "lib", "libsofthsm2.so")
	_, err = os.Stat(libPath)
	switch {
	case module != "" || errors.Is(err, fs.ErrNotExist):
		// An explicit --module always replaces the copy (so a bad copy can be
		// repaired); otherwise the copy is made once.
		src := module
		if src == "" {
			if src, err = findSoftHSM(); err != nil {
				return "", err
			}
			if err := checkModule(src); err != nil {
				return "", err
			}
		}
		if err := copyFile(src, libPath); err != nil {
			return "", fmt.Errorf("copying %s: %w", src, err)
		}
	case err != nil:
		return "", err
	default:
		if pkcs11.New(libPath) == nil {
			return "", fmt.Errorf("%s is not a loadable PKCS#11 library; pass --module PATH (a libsofthsm2.so) to replace it", libPath)
		}
	}
	soPINPath := filepath.Join(dir, "pins", "so.pin")
	userPINPath := filepath.Join(dir, "pins", "user.pin")
	if err := ensureToken(libPath, confPath, soPINPath, userPINPath); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`# Written by "hsmctl dev init": a local SoftHSM token for development only.
# The PIN sits in a file next to the token; never use this layout in production.
clusters:
  - name: primary
    module: %s
    token_label: %s
    pin_file: %s
    module_env:
      SOFTHSM2_CONF: %s
pool:
  max_sessions: 8
`, yamlString(libPath), yamlString(devTokenLabel), yamlString(userPINPath), yamlString(confPath))
	if err := writeFileAtomic(cfgPath, []byte(cfg), 0o600); err != nil {
		return "", err
	}
	return cfgPath, nil
}

// ensureToken initializes the token unless it already exists, in which case
// its PIN files must exist too.
func ensureToken(libPath, confPath, soPINPath, userPINPath string) (err error) {
	p, restore, err := loadModule(libPath, confPath)
	if err != nil {
		return err
	}
	defer restore()
	slots, err := p.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("SoftHSM: list slots: %w", err)
	}
	free, found := uint(0), false
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			return fmt.Errorf("SoftHSM: token info: %w", err)
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			if !found {
				free, found = s, true
			}
			continue
		}
		if strings.TrimRight(ti.Label, " \x00") == devTokenLabel {
			for _, f := range []string{userPINPath, soPINPath} {
				if _, err := os.Stat(f); err != nil {
					return fmt.Errorf("token %q exists but its PIN file %s is missing; remove %s to start over (this destroys its keys)",
						devTokenLabel, f, filepath.Dir(filepath.Dir(f)))
				}
			}
			return nil
		}
	}
	if !found {
		return fmt.Errorf("SoftHSM offers no free slot for token %q", devTokenLabel)
	}
	soPIN, userPIN := rand.Text(), rand.Text()
	if err := writeFileAtomic(soPINPath, []byte(soPIN+"\n"), 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(userPINPath, []byte(userPIN+"\n"), 0o600); err != nil {
		return err
	}
	if err := p.InitToken(free, soPIN, devTokenLabel); err != nil {
		return fmt.Errorf("SoftHSM: initialize token %q: %w", devTokenLabel, err)
	}
	// SoftHSM gives an initialized token a new slot ID: find it again.
	slots, err = p.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("SoftHSM: list slots: %w", err)
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil || strings.TrimRight(ti.Label, " \x00") != devTokenLabel {
			continue
		}
		sh, err := p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return fmt.Errorf("SoftHSM: open session: %w", err)
		}
		defer p.CloseSession(sh)
		if err := p.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
			return fmt.Errorf("SoftHSM: security officer login: %w", err)
		}
		defer p.Logout(sh)
		if err := p.InitPIN(sh, userPIN); err != nil {
			return fmt.Errorf("SoftHSM: set the user PIN: %w", err)
		}
		return nil
	}
	return fmt.Errorf("SoftHSM: token %q not found after initialization", devTokenLabel)
}

// loadModule loads and initializes a SoftHSM copy with its configuration.
// restore finalizes it and restores the environment.
func loadModule(libPath, confPath string) (*pkcs11.Ctx, func(), error) {
	prev, had := os.LookupEnv("SOFTHSM2_CONF")
	os.Setenv("SOFTHSM2_CONF", confPath)
	resetEnv := func() {
		if had {
			os.Setenv("SOFTHSM2_CONF", prev)
		} else {
			os.Unsetenv("SOFTHSM2_CONF")
		}
	}
	p := pkcs11.New(libPath)
	if p == nil {
		resetEnv()
		return nil, nil, fmt.Errorf("%s is not a loadable PKCS#11 library", libPath)
	}
	if err := p.Initialize(); err != nil {
		resetEnv()
		return nil, nil, fmt.Errorf("SoftHSM: initialize %s: %w", libPath, err)
	}
	// Finalize but never Destroy (dlclose): SoftHSM leaves OpenSSL handlers
	// behind that crash the process once the library is unmapped, and
	// hsmclient loads the same copy again in this process (demo, tests).
	return p, func() {
		_ = p.Finalize()
		resetEnv()
	}, nil
}

// findSoftHSM returns the path of the system's libsofthsm2.so.
func findSoftHSM() (string, error) {
	triplets := []string{"*"}
	if out, err := exec.Command("dpkg-architecture", "-qDEB_HOST_MULTIARCH").Output(); err == nil {
		triplets = append([]string{strings.TrimSpace(string(out))}, triplets...)
	}
	for _, pattern := range softHSMSearchPath {
		for _, tr := range triplets {
			matches, _ := filepath.Glob(strings.ReplaceAll(pattern, "%s", tr))
			if len(matches) > 0 {
				return matches[0], nil
			}
		}
	}
	return "", errors.New("libsofthsm2.so not found: run scripts/deps.sh (or apt-get install softhsm2), or pass --module PATH")
}

// checkModule reports whether path is a file that loads as a PKCS#11
// library. The library is loaded (dlopen and C_GetFunctionList) but not
// initialized, and never unloaded: see loadModule.
func checkModule(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if pkcs11.New(path) == nil {
		return fmt.Errorf("%s is not a loadable PKCS#11 library", path)
	}
	return nil
}

// copyFile copies src (following symlinks) to dst through a temporary file.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	return writeFileAtomic(dst, data, 0o755)
}

// yamlString quotes s as a YAML double-quoted scalar.
func yamlString(s string) string {
	return fmt.Sprintf("%q", s)
}
