package stacks

import (
	"maps"
	"testing"

	"github.com/personapass/hsm/infra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func parseMap(cfg map[string]string) (Config, error) {
	return ParseConfig(func(k string) (string, bool) { v, ok := cfg[k]; return v, ok })
}

func TestConfigValidationNamesTheKeyAndTheProblem(t *testing.T) {
	prod, dr := stackConfig(t, "prod"), stackConfig(t, "dr")
	cases := []struct {
		name   string
		base   map[string]string
		key    string
		value  string
		delete bool
		want   string
	}{
		{"invalid VPC CIDR", prod, KeyVpcCIDR, "10.0.240.0/33", false, "personapass-hsm:vpcCidr: \"10.0.240.0/33\" is not a CIDR block"},
		{"VPC CIDR with host bits", prod, KeyVpcCIDR, "10.0.241.0/21", false, "personapass-hsm:vpcCidr: 10.0.241.0/21 has host bits set"},
		{"VPC too small for the layout", prod, KeyVpcCIDR, "10.0.240.0/26", false, "personapass-hsm:vpcCidr: 10.0.240.0/26 must be between /16 and /24"},
		{"invalid peer CIDR", prod, KeyPeerVpcCIDR, "not-a-cidr", false, "personapass-hsm:peerVpcCidr: \"not-a-cidr\" is not a CIDR block"},
		{"overlapping CIDRs", dr, KeyPeerVpcCIDR, "10.0.248.0/22", false, "personapass-hsm:peerVpcCidr: 10.0.248.0/22 overlaps personapass-hsm:vpcCidr 10.0.248.0/21"},
		{"fewer than 2 HSMs", prod, KeyHSMCount, "1", false, "personapass-hsm:hsmCount: 1: a cluster needs at least 2 HSMs"},
		{"more HSMs than the layout's AZs", prod, KeyHSMCount, "5", false, "personapass-hsm:hsmCount: 5: one HSM per AZ and the subnet layout holds at most 4 AZs"},
		{"HSM count not a number", prod, KeyHSMCount, "three", false, "personapass-hsm:hsmCount: \"three\" is not an integer"},
		{"closed HSM type", prod, KeyHSMType, "hsm1.medium", false, "personapass-hsm:hsmType: \"hsm1.medium\" is not a supported HSM type (AWS no longer creates hsm1.medium clusters)"},
		{"unknown HSM type", prod, KeyHSMType, "hsm9.huge", false, "personapass-hsm:hsmType: \"hsm9.huge\" is not a supported HSM type"},
		{"unknown mode", prod, KeyHSMMode, "FIPS2", false, "personapass-hsm:hsmMode: \"FIPS2\" is not a cluster mode"},
		{"DR without backup id", dr, KeySourceBackupID, "", false, "personapass-hsm:sourceBackupId: a dr stack restores its cluster from a backup"},
		{"malformed backup id", dr, KeySourceBackupID, "snap-123", false, "personapass-hsm:sourceBackupId: \"snap-123\" is not a CloudHSM backup id"},
		{"alert e-mail not an address", prod, KeyCriticalAlerts, `["oncall-at-personapass"]`, false, "personapass-hsm:criticalAlerts[0]: \"oncall-at-personapass\" is not an e-mail address"},
		{"alert with display name", prod, KeyWarningAlerts, `["On Call <oncall@personapass.example>"]`, false, "personapass-hsm:warningAlerts[0]:"},
		{"no critical alert endpoint", prod, KeyCriticalAlerts, `[]`, false, "personapass-hsm:criticalAlerts: needs at least one"},
		{"unknown role", prod, KeyRole, "secondary", false, "personapass-hsm:role: \"secondary\" is not a role"},
		{"primary referencing a stack", prod, KeyPrimaryStack, "personapass/personapass-hsm/dr", false, "personapass-hsm:primaryStack: only a dr stack references"},
		{"same replica region", prod, KeyReplicaRegion, "us-east-1", false, "personapass-hsm:replicaRegion: must differ from aws:region"},
		{"bad region", prod, KeyRegion, "useast1", false, "aws:region: \"useast1\" is not an AWS region name"},
		{"bad retention", prod, KeyLogRetentionDays, "100", false, "personapass-hsm:logRetentionDays: 100 is not a CloudWatch Logs retention period"},
		{"expiry before archive minimum", prod, KeyBackupExpirationDays, "60", false, "personapass-hsm:backupExpirationDays: 60: must be at least"},
		{"missing owner", prod, KeyOwner, "", true, "personapass-hsm:owner: required but not set"},
		{"empty cost centre", prod, KeyCostCentre, " ", false, "personapass-hsm:costCentre: must not be empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := maps.Clone(tc.base)
			if tc.delete {
				delete(cfg, FullKey(tc.key))
			} else {
				cfg[FullKey(tc.key)] = tc.value
			}
			parsed, err := parseMap(cfg)
			if err == nil {
				err = parsed.Validate()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestValidConfigsPass(t *testing.T) {
	for _, stack := range []string{"prod", "dr"} {
		c, err := parseMap(stackConfig(t, stack))
		require.NoError(t, err)
		require.NoError(t, c.Validate())
		c.Alerts[infra.Operational] = []string{"https://hooks.personapass.example/x", "ops@personapass.example"}
		assert.NoError(t, c.Validate())
	}
}

func TestValidateZones(t *testing.T) {
	c := Config{HSMCount: 3, Region: "us-west-2"}
	assert.NoError(t, c.ValidateZones([]string{"us-west-2a", "us-west-2b", "us-west-2c"}))
	err := c.ValidateZones([]string{"us-west-2a", "us-west-2b"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "personapass-hsm:hsmCount: 3 HSMs need 3 AZs with CloudHSM, us-west-2 has 2")
}

// The program itself refuses bad config: an invalid value and more HSMs than the region's
// CloudHSM-capable AZs (us-west-2 offers three under the mocks).
func TestProgramRefusesInvalidConfig(t *testing.T) {
	cfg := stackConfig(t, "prod")
	cfg[FullKey(KeyHSMCount)] = "1"
	_, err := PlanConfig("prod", cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "personapass-hsm:hsmCount")

	cfg = stackConfig(t, "dr")
	cfg[FullKey(KeyHSMCount)] = "4"
	_, err = PlanConfig("dr", cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "personapass-hsm:hsmCount: 4 HSMs need 4 AZs with CloudHSM, us-west-2 has 3")
}

func TestStackFilesMissingRequiredKey(t *testing.T) {
	files, err := LoadStackFiles("..", "prod")
	require.NoError(t, err)
	k := mustKey(t, FullKey(KeyVpcCIDR))
	delete(files.Stack.Config, k)
	_, err = files.Config()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "personapass-hsm:vpcCidr: required by Pulumi.yaml but not set")
}
