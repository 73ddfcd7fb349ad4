// Package stacks turns a stack's configuration into the PersonaPass HSM platform: typed config with
// validation, the composition of the infra components for a primary or DR stack, and an offline
// plan of the whole resource graph under Pulumi's mocks.
package stacks

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/personapass/hsm/infra"
)

// Project is the Pulumi project name and the namespace of the program's config keys.
const Project = "personapass-hsm"

// Role is what a stack is for.
type Role string

// The stack roles.
const (
	Primary Role = "primary"
	DR      Role = "dr"
)

// Config keys. Keys without a namespace live in the project namespace (personapass-hsm:).
const (
	KeyRole                 = "role"
	KeyEnvironment          = "environment"
	KeyOwner                = "owner"
	KeyCostCentre           = "costCentre"
	KeyRegion               = "aws:region"
	KeyReplicaRegion        = "replicaRegion"
	KeyVpcCIDR              = "vpcCidr"
	KeyPeerVpcCIDR          = "peerVpcCidr"
	KeyHSMCount             = "hsmCount"
	KeyHSMType              = "hsmType"
	KeyHSMMode              = "hsmMode"
	KeySourceBackupID       = "sourceBackupId"
	KeyPrimaryStack         = "primaryStack"
	KeyLogRetentionDays     = "logRetentionDays"
	KeyBackupTransitionDays = "backupTransitionDays"
	KeyBackupExpirationDays = "backupExpirationDays"
	KeyCriticalAlerts       = "criticalAlerts"
	KeyWarningAlerts        = "warningAlerts"
	KeyOperationalAlerts    = "operationalAlerts"
)

// FullKey returns the key as it appears in stack files and PULUMI_CONFIG ("personapass-hsm:hsmCount").
func FullKey(key string) string {
	if strings.Contains(key, ":") {
		return key
	}
	return Project + ":" + key
}

// Config is the typed configuration of one stack.
type Config struct {
	Role                 Role
	Environment          string
	Owner                string
	CostCentre           string
	Region               string
	ReplicaRegion        string
	VpcCIDR              string
	PeerVpcCIDR          string
	HSMCount             int
	HSMType              string
	HSMMode              string
	SourceBackupID       string
	PrimaryStack         string
	LogRetentionDays     int
	BackupTransitionDays int
	BackupExpirationDays int
	Alerts               map[infra.Severity][]string
}

// alertKeys maps each severity to its config key.
var alertKeys = map[infra.Severity]string{
	infra.Critical: KeyCriticalAlerts, infra.Warning: KeyWarningAlerts, infra.Operational: KeyOperationalAlerts,
}

// ParseConfig reads a Config through get, which returns the raw value of a full key (as the
// engine passes it: numbers as decimal text, arrays as JSON). Every key must be present; the
// project's defaults in Pulumi.yaml supply the optional ones.
func ParseConfig(get func(fullKey string) (string, bool)) (Config, error) {
	var errs []error
	text := func(key string) string {
		v, ok := get(FullKey(key))
		if !ok {
			errs = append(errs, fmt.Errorf("%s: required but not set", FullKey(key)))
		}
		return v
	}
	integer := func(key string) int {
		v := text(key)
		n, err := strconv.Atoi(v)
		if err != nil && v != "" {
			errs = append(errs, fmt.Errorf("%s: %q is not an integer", FullKey(key), v))
		}
		return n
	}
	strList := func(key string) []string {
		v := text(key)
		var out []string
		if v != "" {
			if err := json.Unmarshal([]byte(v), &out); err != nil {
				errs = append(errs, fmt.Errorf("%s: not a list of strings: %v", FullKey(key), err))
			}
		}
		return out
	}
	c := Config{
		Role: Role(text(KeyRole)), Environment: text(KeyEnvironment), Owner: text(KeyOwner), CostCentre: text(KeyCostCentre),
		Region: text(KeyRegion), ReplicaRegion: text(KeyReplicaRegion),
		VpcCIDR: text(KeyVpcCIDR), PeerVpcCIDR: text(KeyPeerVpcCIDR),
		HSMCount: integer(KeyHSMCount), HSMType: text(KeyHSMType), HSMMode: text(KeyHSMMode),
		SourceBackupID: text(KeySourceBackupID), PrimaryStack: text(KeyPrimaryStack),
		LogRetentionDays:     integer(KeyLogRetentionDays),
		BackupTransitionDays: integer(KeyBackupTransitionDays), BackupExpirationDays: integer(KeyBackupExpirationDays),
		Alerts: map[infra.Severity][]string{},
	}
	for _, sev := range infra.Severities {
		c.Alerts[sev] = strList(alertKeys[sev])
	}
	return c, errors.Join(errs...)
}

var (
	envPattern      = regexp.MustCompile(`^[a-z][a-z0-9-]{1,15}$`)
	regionPattern   = regexp.MustCompile(`^[a-z]{2}(-gov)?-[a-z]+-[0-9]$`)
	backupIDPattern = regexp.MustCompile(`^backup-[a-z0-9]+$`)
	stackRefPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
)

// LogRetentionValues are the retention periods CloudWatch Logs accepts (days).
var LogRetentionValues = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

// MinHSMs is the smallest cluster the program builds: one HSM is a single point of failure.
const MinHSMs = 2

// glacierIRMinimumDays is the minimum storage duration Glacier Instant Retrieval bills.
const glacierIRMinimumDays = 90

// Validate checks the configuration and returns every problem, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", FullKey(key), fmt.Sprintf(format, args...)))
	}
	switch c.Role {
	case Primary:
		if c.PrimaryStack != "" {
			bad(KeyPrimaryStack, "only a dr stack references the primary stack; a primary stack that referenced another would create a cycle")
		}
	case DR:
		if c.SourceBackupID == "" {
			bad(KeySourceBackupID, "a dr stack restores its cluster from a backup copied to %s: set the backup id", c.Region)
		}
		if c.PrimaryStack != "" && !stackRefPattern.MatchString(c.PrimaryStack) {
			bad(KeyPrimaryStack, "%q is not a fully qualified stack name (organization/project/stack)", c.PrimaryStack)
		}
	default:
		bad(KeyRole, "%q is not a role: use %q or %q", c.Role, Primary, DR)
	}
	if c.SourceBackupID != "" && !backupIDPattern.MatchString(c.SourceBackupID) {
		bad(KeySourceBackupID, "%q is not a CloudHSM backup id (backup-...)", c.SourceBackupID)
	}
	if !envPattern.MatchString(c.Environment) {
		bad(KeyEnvironment, "%q must be 2-16 lowercase letters, digits or dashes, starting with a letter", c.Environment)
	}
	for key, v := range map[string]string{KeyOwner: c.Owner, KeyCostCentre: c.CostCentre} {
		if strings.TrimSpace(v) == "" {
			bad(key, "must not be empty (it becomes a tag on every resource)")
		}
	}
	for key, v := range map[string]string{KeyRegion: c.Region, KeyReplicaRegion: c.ReplicaRegion} {
		if !regionPattern.MatchString(v) {
			bad(key, "%q is not an AWS region name", v)
		}
	}
	if c.ReplicaRegion == c.Region {
		bad(KeyReplicaRegion, "must differ from %s (%s): backups replicate to the other region", KeyRegion, c.Region)
	}
	c.validateNetwork(bad)
	c.validateHSMs(bad)
	if !slices.Contains(LogRetentionValues, c.LogRetentionDays) {
		bad(KeyLogRetentionDays, "%d is not a CloudWatch Logs retention period (one of %v)", c.LogRetentionDays, LogRetentionValues)
	}
	if c.BackupTransitionDays < 1 {
		bad(KeyBackupTransitionDays, "%d: must be at least 1", c.BackupTransitionDays)
	}
	if c.BackupExpirationDays < c.BackupTransitionDays+glacierIRMinimumDays {
		bad(KeyBackupExpirationDays, "%d: must be at least %s + %d = %d (Glacier Instant Retrieval bills %d days minimum)",
			c.BackupExpirationDays, KeyBackupTransitionDays, glacierIRMinimumDays, c.BackupTransitionDays+glacierIRMinimumDays,
			glacierIRMinimumDays)
	}
	if len(c.Alerts[infra.Critical]) == 0 {
		bad(KeyCriticalAlerts, "needs at least one e-mail address or https:// endpoint")
	}
	for _, sev := range infra.Severities {
		for i, ep := range c.Alerts[sev] {
			if err := checkEndpoint(ep); err != nil {
				bad(fmt.Sprintf("%s[%d]", alertKeys[sev], i), "%v", err)
			}
		}
	}
	return errors.Join(errs...)
}

func (c Config) validateNetwork(bad func(key, format string, args ...any)) {
	vpc, err := netip.ParsePrefix(c.VpcCIDR)
	if err != nil {
		bad(KeyVpcCIDR, "%q is not a CIDR block", c.VpcCIDR)
		return
	}
	if _, err := infra.PlanLayout(c.VpcCIDR, 1); err != nil {
		bad(KeyVpcCIDR, "%v", err)
	}
	peer, err := netip.ParsePrefix(c.PeerVpcCIDR)
	switch {
	case err != nil:
		bad(KeyPeerVpcCIDR, "%q is not a CIDR block", c.PeerVpcCIDR)
	case vpc.Overlaps(peer):
		bad(KeyPeerVpcCIDR, "%s overlaps %s %s: the two stacks' VPCs must not overlap so they can be peered",
			c.PeerVpcCIDR, FullKey(KeyVpcCIDR), c.VpcCIDR)
	}
}

func (c Config) validateHSMs(bad func(key, format string, args ...any)) {
	switch {
	case c.HSMCount < MinHSMs:
		bad(KeyHSMCount, "%d: a cluster needs at least %d HSMs in different AZs to survive the loss of one", c.HSMCount, MinHSMs)
	case c.HSMCount > infra.MaxZones:
		bad(KeyHSMCount, "%d: one HSM per AZ and the subnet layout holds at most %d AZs", c.HSMCount, infra.MaxZones)
	}
	if _, ok := infra.HSMTypes[c.HSMType]; !ok {
		hint := ""
		if c.HSMType == "hsm1.medium" {
			hint = " (AWS no longer creates hsm1.medium clusters)"
		}
		bad(KeyHSMType, "%q is not a supported HSM type%s: use one of %v", c.HSMType, hint, sortedKeys(infra.HSMTypes))
	}
	if !slices.Contains(infra.HSMModes, c.HSMMode) {
		bad(KeyHSMMode, "%q is not a cluster mode: use one of %v (FIPS for FIPS 140 level 3)", c.HSMMode, infra.HSMModes)
	}
}

// ValidateZones checks that the region offers CloudHSM in enough AZs for one HSM each.
func (c Config) ValidateZones(zones []string) error {
	if c.HSMCount > len(zones) {
		return fmt.Errorf("%s: %d HSMs need %d AZs with CloudHSM, %s has %d (%s)", FullKey(KeyHSMCount),
			c.HSMCount, c.HSMCount, c.Region, len(zones), strings.Join(zones, ", "))
	}
	return nil
}

func checkEndpoint(ep string) error {
	if strings.HasPrefix(ep, "https://") {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%q is not an https:// URL", ep)
		}
		return nil
	}
	addr, err := mail.ParseAddress(ep)
	if err != nil || addr.Address != ep || addr.Name != "" || !strings.Contains(ep[strings.LastIndex(ep, "@")+1:], ".") {
		return fmt.Errorf("%q is not an e-mail address (or an https:// URL)", ep)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
