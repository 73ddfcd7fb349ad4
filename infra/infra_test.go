package infra

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlanLayoutIsDisjointAndInsideTheVPC(t *testing.T) {
	l, err := PlanLayout("10.0.248.0/21", MaxZones)
	require.NoError(t, err)
	all := append(append(slices.Clone(l.HSM), l.App...), l.Public...)
	require.Len(t, all, 3*MaxZones)
	for i, a := range all {
		assert.Equal(t, 25, a.Bits())
		assert.True(t, l.VPC.Contains(a.Addr()), "%s outside %s", a, l.VPC)
		for _, b := range all[i+1:] {
			assert.False(t, a.Overlaps(b), "%s overlaps %s", a, b)
		}
	}
	assert.Equal(t, "10.0.248.10", l.HSMAddr[0].String())
	for i, addr := range l.HSMAddr {
		assert.True(t, l.HSM[i].Contains(addr))
	}
}

func TestPlanLayoutRejects(t *testing.T) {
	for cidr, want := range map[string]string{
		"10.0.240.0/33": "not a CIDR block",
		"fd00::/48":     "is not IPv4",
		"10.0.241.0/21": "has host bits set",
		"10.0.0.0/12":   "between /16 and /24",
		"10.0.240.0/26": "between /16 and /24",
	} {
		_, err := PlanLayout(cidr, 2)
		require.Error(t, err, cidr)
		assert.Contains(t, err.Error(), want)
	}
	_, err := PlanLayout("10.0.240.0/21", MaxZones+1)
	assert.ErrorContains(t, err, "the layout holds 1 to 4")
}

func TestHSMACLRulesAdmitHSMPortsOnlyFromAppAndHSMSubnets(t *testing.T) {
	l, err := PlanLayout("10.0.240.0/21", 3)
	require.NoError(t, err)
	app := map[string]bool{}
	hsm := map[string]bool{}
	for i := range l.HSM {
		app[l.App[i].String()], hsm[l.HSM[i].String()] = true, true
	}
	inboundHSMPorts := 0
	for _, r := range HSMACLRules(l) {
		require.True(t, app[r.CIDR] || hsm[r.CIDR], "rule for %s", r.CIDR)
		switch {
		case r.Egress:
			assert.Equal(t, [2]int{1024, 65535}, [2]int{r.FromPort, r.ToPort}, "replies and HSM-to-HSM traffic")
		case r.FromPort == HSMPortFirst:
			assert.Equal(t, HSMPortLast, r.ToPort)
			inboundHSMPorts++
		default:
			assert.True(t, hsm[r.CIDR], "ephemeral inbound only from HSM subnets, not %s", r.CIDR)
		}
	}
	assert.Equal(t, 6, inboundHSMPorts)
}

func TestAlarmSpecsUse80PercentAndDetectWithinFiveMinutes(t *testing.T) {
	limits := HSMTypes["hsm2m.medium"]
	specs := AlarmSpecs(limits)
	byMetric := map[string]AlarmSpec{}
	for _, s := range specs {
		byMetric[s.Metric] = s
		assert.LessOrEqual(t, s.Period*s.Evaluations, MaxDetectionSeconds, s.Name)
		assert.Contains(t, Severities, s.Severity)
	}
	assert.InDelta(t, 720, byMetric["HsmSessionCount"].Threshold, 0.5)
	assert.InDelta(t, 13333, byMetric["HsmKeysTokenOccupied"].Threshold, 0.5)
	assert.InDelta(t, 88, byMetric["HsmTemperature"].Threshold, 0.5)
	assert.Equal(t, Critical, byMetric["HsmUnhealthy"].Severity)
	assert.Equal(t, AuditMetricsNamespace, byMetric["LoginFailures"].Namespace)
	assert.False(t, byMetric["LoginFailures"].ByCluster)
}

func TestPolicyHelpers(t *testing.T) {
	acct := Account{ID: "123456789012", Partition: "aws", Region: "us-west-2"}
	assert.Equal(t, "arn:aws:iam::123456789012:root", acct.RootARN())
	assert.Equal(t, "arn:aws:logs:us-west-2:123456789012:log-group:*", acct.ARN("logs", "log-group:*"))
	assert.Equal(t, "logsuswest2amazonawscom", sidSafe("logs.us-west-2.amazonaws.com"))
	assert.JSONEq(t, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":["sts:AssumeRole"]}]}`,
		string(assumeRolePolicy(ServicePrincipal("ec2.amazonaws.com"), nil)))
}
