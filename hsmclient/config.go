package hsmclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config configures a Client. Load it from YAML with LoadConfig or build it in Go.
// Zero values take the defaults documented on each field.
type Config struct {
	// Clusters in priority order: operations go to the first healthy one.
	Clusters []ClusterConfig `yaml:"clusters"`
	// Pool bounds the sessions opened on each cluster.
	Pool PoolConfig `yaml:"pool"`
	// OperationTimeout bounds one PKCS#11 operation on one cluster (default 2s).
	// A call that exceeds it counts as a cluster failure and may fail over.
	OperationTimeout Duration `yaml:"operation_timeout"`
	// KeyGenerationTimeout bounds one key generation (default 60s): RSA-4096
	// generation takes seconds even on a healthy HSM.
	KeyGenerationTimeout Duration `yaml:"key_generation_timeout"`
	// Failover tunes the circuit breaker and recovery probes.
	Failover FailoverConfig `yaml:"failover"`

	// Logger receives structured events (state changes, failovers, login
	// failures, key management). Nil discards them. Never carries PINs or key material.
	Logger *slog.Logger `yaml:"-"`
	// Observer, when set, is told about every operation and state change
	// (the metrics package implements it).
	Observer Observer `yaml:"-"`
}

// ClusterConfig names one HSM cluster and how to reach it.
type ClusterConfig struct {
	// Name identifies the cluster in errors, logs and metrics.
	Name string `yaml:"name"`
	// Module is the path of the PKCS#11 library (e.g. /opt/cloudhsm/lib/libcloudhsm_pkcs11.so).
	Module string `yaml:"module"`
	// TokenLabel selects the token by label. Exactly one of TokenLabel and Slot is set.
	TokenLabel string `yaml:"token_label"`
	// Slot selects the token by slot ID.
	Slot *uint `yaml:"slot"`
	// PINEnv names the environment variable holding the crypto user's PIN
	// (CloudHSM: "user:password"). Exactly one of PINEnv and PINFile is set.
	PINEnv string `yaml:"pin_env"`
	// PINFile is a file holding the PIN; surrounding white space is ignored.
	PINFile string `yaml:"pin_file"`
	// ModuleEnv is set in the process environment while the module initializes
	// (p11-kit-client reads P11_KIT_SERVER_ADDRESS, SoftHSM reads SOFTHSM2_CONF).
	ModuleEnv map[string]string `yaml:"module_env"`
}

// PoolConfig bounds each cluster's session pool.
type PoolConfig struct {
	// MaxSessions is the most sessions open per cluster (default 16), counting
	// the one session that holds the login, so MaxSessions-1 (at least 1) serve
	// operations. The token's own MaxSessionCount lowers it when the token
	// reports a finite limit.
	MaxSessions int `yaml:"max_sessions"`
	// MaxIdle is the most idle sessions kept for reuse (default MaxSessions).
	MaxIdle int `yaml:"max_idle"`
}

// FailoverConfig tunes when a cluster is taken out of rotation and brought back.
type FailoverConfig struct {
	// FailureThreshold is how many consecutive cluster failures mark a cluster down (default 3).
	FailureThreshold int `yaml:"failure_threshold"`
	// BusyRetries is how many times a throttled call (CKR_FUNCTION_FAILED) is retried
	// on the same cluster before it counts as a failure (default 3).
	BusyRetries int `yaml:"busy_retries"`
	// BusyBackoff is the first pause before a throttled retry; it doubles each time (default 20ms).
	BusyBackoff Duration `yaml:"busy_backoff"`
	// ProbeMinInterval and ProbeMaxInterval bound the jittered back-off between
	// recovery probes of a down cluster (defaults 200ms and 2s).
	ProbeMinInterval Duration `yaml:"probe_min_interval"`
	ProbeMaxInterval Duration `yaml:"probe_max_interval"`
	// RecoveryProbes is how many consecutive healthy probes bring a cluster back (default 2).
	RecoveryProbes int `yaml:"recovery_probes"`
}

// Duration is a time.Duration written in YAML as "250ms" or "2s".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(node *yaml.Node) error {
	var s string
	if err := node.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string such as \"2s\"", node.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as \"2s\"", node.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// LoadConfig reads a YAML configuration file. Unknown keys are errors that name the key.
func LoadConfig(path string) (Config, error) {
	data, err := readSmallFile(path, maxConfigSize)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML configuration and validates it.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("%w: the file is empty", ErrInvalidConfig)
		}
		return Config{}, fmt.Errorf("%w: %s", ErrInvalidConfig, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks the configuration and names the first field that is wrong.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if len(c.Clusters) == 0 {
		return bad("clusters: at least one cluster is required")
	}
	seen := map[string]bool{}
	for i, cl := range c.Clusters {
		field := fmt.Sprintf("clusters[%d]", i)
		switch {
		case cl.Name == "":
			return bad("%s.name is required", field)
		case seen[cl.Name]:
			return bad("%s.name: %q is used twice", field, cl.Name)
		case cl.Module == "":
			return bad("%s.module is required (path of the PKCS#11 library)", field)
		case (cl.TokenLabel == "") == (cl.Slot == nil):
			return bad("%s: set exactly one of token_label and slot", field)
		case (cl.PINEnv == "") == (cl.PINFile == ""):
			return bad("%s: set exactly one of pin_env and pin_file", field)
		case cl.PINEnv != "" && !envName.MatchString(cl.PINEnv):
			return bad("%s.pin_env must name an environment variable (letters, digits, _), not hold the PIN", field)
		}
		seen[cl.Name] = true
	}
	for _, f := range []struct {
		name  string
		value int
	}{
		{"pool.max_sessions", c.Pool.MaxSessions},
		{"pool.max_idle", c.Pool.MaxIdle},
		{"failover.failure_threshold", c.Failover.FailureThreshold},
		{"failover.busy_retries", c.Failover.BusyRetries},
		{"failover.recovery_probes", c.Failover.RecoveryProbes},
	} {
		if f.value < 0 {
			return bad("%s must not be negative (got %d)", f.name, f.value)
		}
	}
	for _, f := range []struct {
		name  string
		value Duration
	}{
		{"operation_timeout", c.OperationTimeout},
		{"key_generation_timeout", c.KeyGenerationTimeout},
		{"failover.busy_backoff", c.Failover.BusyBackoff},
		{"failover.probe_min_interval", c.Failover.ProbeMinInterval},
		{"failover.probe_max_interval", c.Failover.ProbeMaxInterval},
	} {
		if f.value < 0 {
			return bad("%s must not be negative (got %s)", f.name, time.Duration(f.value))
		}
	}
	if c.Pool.MaxIdle > 0 && c.Pool.MaxSessions > 0 && c.Pool.MaxIdle > c.Pool.MaxSessions {
		return bad("pool.max_idle (%d) exceeds pool.max_sessions (%d)", c.Pool.MaxIdle, c.Pool.MaxSessions)
	}
	if c.Failover.ProbeMaxInterval > 0 && c.Failover.ProbeMinInterval > c.Failover.ProbeMaxInterval {
		return bad("failover.probe_min_interval exceeds failover.probe_max_interval")
	}
	return nil
}

// withDefaults returns a copy with every zero setting replaced by its default.
func (c Config) withDefaults() Config {
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *Duration, def time.Duration) {
		if *v == 0 {
			*v = Duration(def)
		}
	}
	setInt(&c.Pool.MaxSessions, 16)
	setInt(&c.Pool.MaxIdle, c.Pool.MaxSessions)
	setDur(&c.OperationTimeout, 2*time.Second)
	setDur(&c.KeyGenerationTimeout, 60*time.Second)
	setInt(&c.Failover.FailureThreshold, 3)
	setInt(&c.Failover.BusyRetries, 3)
	setDur(&c.Failover.BusyBackoff, 20*time.Millisecond)
	setDur(&c.Failover.ProbeMinInterval, 200*time.Millisecond)
	setDur(&c.Failover.ProbeMaxInterval, 2*time.Second)
	setInt(&c.Failover.RecoveryProbes, 2)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Size limits for the files the client reads.
const (
	maxConfigSize  = 1 << 20
	maxPINFileSize = 4 << 10
)

// readSmallFile reads a regular file of at most limit bytes. Devices, FIFOs
// and oversized files are refused instead of read (or waited on) forever.
func readSmallFile(path string, limit int64) ([]byte, error) {
	info, err := os.Stat(path) // before opening: opening a FIFO blocks until a writer comes
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// envName is what an environment variable name looks like; pin_env values
// that do not are refused without being echoed (they may be a PIN written inline).
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// readPIN fetches the cluster's PIN from its environment variable or file.
// Errors name the variable or file, never the PIN.
func (cl ClusterConfig) readPIN() (string, error) {
	if cl.PINEnv != "" {
		pin, ok := os.LookupEnv(cl.PINEnv)
		if !ok || pin == "" {
			return "", fmt.Errorf("%w: cluster %q: environment variable %s (pin_env) is not set", ErrInvalidConfig, cl.Name, cl.PINEnv)
		}
		return pin, nil
	}
	data, err := readSmallFile(cl.PINFile, maxPINFileSize)
	if err != nil {
		return "", fmt.Errorf("%w: cluster %q: pin_file: %v", ErrInvalidConfig, cl.Name, err)
	}
	pin := strings.TrimSpace(string(data))
	if pin == "" {
		return "", fmt.Errorf("%w: cluster %q: pin_file %s is empty", ErrInvalidConfig, cl.Name, cl.PINFile)
	}
	return pin, nil
}
