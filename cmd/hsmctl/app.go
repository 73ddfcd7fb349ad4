package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"github.com/personapass/hsm/hsmclient"
)

// defaultConfigPath is used when neither --config nor $HSMCTL_CONFIG is set
// and the file exists: "hsmctl dev init" (and the demo) write it.
const defaultConfigPath = ".dev/hsmclient.yaml"

// configEnv names the environment variable holding the configuration path.
const configEnv = "HSMCTL_CONFIG"

// app is the state shared by every subcommand of one hsmctl run.
type app struct {
	ctx    context.Context // the run's context, cancelled by SIGINT/SIGTERM
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	configFlag string // --config
	configSet  bool   // --config was given, perhaps as ""
	verbose    bool   // --verbose

	configPath string // the file the client was opened from
	client     *hsmclient.Client
}

// errNoConfig reports that no configuration was given or found.
var errNoConfig = errors.New("no configuration: pass --config FILE, set " + configEnv +
	", or run \"hsmctl dev init --dir .dev\" to create a local SoftHSM token (" + defaultConfigPath + ")")

// findConfig returns the configuration path: --config, then $HSMCTL_CONFIG,
// then defaultConfigPath when it exists. explicit tells whether the user named
// the file (then it must exist) or errNoConfig is returned.
func (a *app) findConfig() (path string, explicit bool, err error) {
	if a.configSet && a.configFlag == "" {
		// An empty --config is a mistake (an unset shell variable, say), not
		// a request to fall back to $HSMCTL_CONFIG or .dev.
		return "", true, errors.New("--config is empty: name a configuration file, or leave --config out")
	}
	if a.configFlag != "" {
		return a.configFlag, true, nil
	}
	if p := a.getenv(configEnv); p != "" {
		return p, true, nil
	}
	if _, err := os.Stat(defaultConfigPath); err == nil {
		return defaultConfigPath, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("%s: %w", defaultConfigPath, err)
	}
	return "", false, errNoConfig
}

// loadConfig finds and parses the configuration.
func (a *app) loadConfig() (hsmclient.Config, string, error) {
	path, _, err := a.findConfig()
	if err != nil {
		return hsmclient.Config{}, "", err
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return hsmclient.Config{}, "", fmt.Errorf("configuration file %s does not exist", path)
		}
		return hsmclient.Config{}, "", fmt.Errorf("configuration file: %w", err)
	}
	cfg, err := hsmclient.LoadConfig(path)
	if err != nil {
		return hsmclient.Config{}, "", err
	}
	if a.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg, path, nil
}

// openClient opens the configured client once per run; run closes it.
func (a *app) openClient(ctx context.Context) (*hsmclient.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	cfg, path, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	c, err := hsmclient.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	a.client, a.configPath = c, path
	return c, nil
}

// context returns the run's context.
func (a *app) context() context.Context {
	if a.ctx == nil {
		return context.Background()
	}
	return a.ctx
}

// closeClient closes the client if one was opened.
func (a *app) closeClient() {
	if a.client != nil {
		_ = a.client.Close()
		a.client = nil
	}
}

// configValue is the --config flag: it records that the flag was given, so
// that an empty value is an error rather than "not given".
type configValue struct{ a *app }

func (v configValue) String() string {
	if v.a == nil {
		return ""
	}
	return v.a.configFlag
}

func (v configValue) Set(s string) error {
	v.a.configFlag, v.a.configSet = s, true
	return nil
}

func (configValue) Type() string { return "string" }
