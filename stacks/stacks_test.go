package stacks

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/personapass/hsm/infra"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudhsmv2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sns"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/vpc"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	planOnce  sync.Once
	plans     map[string]*PlanResult
	planError error
)

// stackPlans runs the program once per stack from the real stack files.
func stackPlans(t *testing.T) map[string]*PlanResult {
	t.Helper()
	planOnce.Do(func() {
		plans = map[string]*PlanResult{}
		for _, stack := range []string{"prod", "dr"} {
			p, err := Plan("..", stack)
			if err != nil {
				planError = err
				return
			}
			plans[stack] = p
		}
	})
	require.NoError(t, planError)
	return plans
}

func stackConfig(t *testing.T, stack string) map[string]string {
	t.Helper()
	files, err := LoadStackFiles("..", stack)
	require.NoError(t, err)
	cfg, err := files.Config()
	require.NoError(t, err)
	return cfg
}

func TestStackFilesLoadWithPulumiLoadersAndCarryEveryKey(t *testing.T) {
	for _, stack := range []string{"prod", "dr"} {
		t.Run(stack, func(t *testing.T) {
			files, err := LoadStackFiles("..", stack)
			require.NoError(t, err)
			assert.Equal(t, Project, files.Project.Name.String())
			assert.Equal(t, "go", files.Project.Runtime.Name())
			for name, typ := range files.Project.Config {
				assert.NotNil(t, typ.Type, "%s has no type in Pulumi.yaml", name)
				assert.NotEmpty(t, typ.Description, "%s has no description in Pulumi.yaml", name)
				if typ.Default == nil {
					_, ok := files.Stack.Config[mustKey(t, FullKey(name))]
					assert.True(t, ok, "Pulumi.%s.yaml lacks required key %s", stack, FullKey(name))
				}
			}
			_, ok := files.Stack.Config[mustKey(t, KeyRegion)]
			assert.True(t, ok, "Pulumi.%s.yaml lacks %s", stack, KeyRegion)
			cfg, err := files.Config()
			require.NoError(t, err)
			parsed, err := ParseConfig(func(k string) (string, bool) { v, ok := cfg[k]; return v, ok })
			require.NoError(t, err)
			require.NoError(t, parsed.Validate())
		})
	}
}

func TestStackConfigsAreTheIssuesStacks(t *testing.T) {
	p := stackPlans(t)
	prod, dr := p["prod"].Config, p["dr"].Config
	assert.Equal(t, Primary, prod.Role)
	assert.Equal(t, "us-east-1", prod.Region)
	assert.Equal(t, 3, prod.HSMCount)
	assert.Equal(t, "10.0.240.0/21", prod.VpcCIDR)
	assert.Equal(t, DR, dr.Role)
	assert.Equal(t, "us-west-2", dr.Region)
	assert.Equal(t, 2, dr.HSMCount)
	assert.NotEmpty(t, dr.SourceBackupID)
	assert.Equal(t, prod.VpcCIDR, dr.PeerVpcCIDR)
	assert.Equal(t, dr.VpcCIDR, prod.PeerVpcCIDR)
	assert.Equal(t, prod.Region, dr.ReplicaRegion)
	assert.Equal(t, dr.Region, prod.ReplicaRegion)
	for _, c := range []Config{prod, dr} {
		assert.Equal(t, "hsm2m.medium", c.HSMType)
		assert.Equal(t, "FIPS", c.HSMMode)
	}
}

func mustKey(t *testing.T, full string) config.Key {
	t.Helper()
	k, err := config.ParseKey(full)
	require.NoError(t, err)
	return k
}

func TestEveryResourcePassesThePolicies(t *testing.T) {
	for stack, p := range stackPlans(t) {
		t.Run(stack, func(t *testing.T) {
			require.NotEmpty(t, p.Resources)
			assert.Empty(t, Violations(p))
		})
	}
}

func TestHSMsOnePerDistinctAZ(t *testing.T) {
	want := map[string]int{"prod": 3, "dr": 2}
	for stack, p := range stackPlans(t) {
		t.Run(stack, func(t *testing.T) {
			hsms := p.Find(TypeHSM)
			require.Len(t, hsms, want[stack])
			azs := map[string]bool{}
			for _, h := range hsms {
				az := s(h.Outputs, "availabilityZone")
				require.NotEmpty(t, az)
				assert.False(t, azs[az], "two HSMs in %s", az)
				azs[az] = true
				assert.Contains(t, MockZones[p.Config.Region], az)
			}
			clusters := p.Find(TypeCluster)
			require.Len(t, clusters, 1)
			c := clusters[0]
			assert.Equal(t, "hsm2m.medium", s(c.Inputs, "hsmType"))
			assert.Equal(t, "FIPS", s(c.Inputs, "mode"))
			assert.Len(t, list(c.Inputs, "subnetIds"), want[stack])
			if p.Config.Role == DR {
				assert.Equal(t, p.Config.SourceBackupID, s(c.Inputs, "sourceBackupIdentifier"))
			} else {
				assert.Empty(t, s(c.Inputs, "sourceBackupIdentifier"))
			}
		})
	}
}

func TestCreationOrderAuditLogBetweenClusterAndHSMs(t *testing.T) {
	for stack, p := range stackPlans(t) {
		t.Run(stack, func(t *testing.T) {
			cluster := p.Find(TypeCluster)[0]
			var audit Resource
			for _, lg := range p.Find(TypeLogGroup) {
				if strings.HasPrefix(s(lg.Inputs, "name"), "/aws/cloudhsm/") {
					audit = lg
				}
			}
			require.Equal(t, "/aws/cloudhsm/"+s(cluster.Outputs, "clusterId"), s(audit.Inputs, "name"))
			assert.Contains(t, audit.Dependencies, cluster.URN)
			assert.Equal(t, float64(p.Config.LogRetentionDays), audit.Inputs["retentionInDays"])
			var first Resource
			for _, h := range p.Find(TypeHSM) {
				assert.Contains(t, h.Dependencies, audit.URN, "%s does not wait for the audit log group", h.Name)
				if strings.HasSuffix(h.Name, "-0") {
					first = h
				}
			}
			require.NotEmpty(t, first.URN)
			for _, h := range p.Find(TypeHSM) {
				if h.URN != first.URN {
					assert.Contains(t, h.Dependencies, first.URN, "%s does not wait for the first HSM", h.Name)
				}
			}
		})
	}
}

func TestReplicationWaitsForVersioningOfBothBuckets(t *testing.T) {
	for stack, p := range stackPlans(t) {
		t.Run(stack, func(t *testing.T) {
			versionings := p.Find("aws:s3/bucketVersioningV2:BucketVersioningV2")
			require.Len(t, versionings, 2)
			repl := p.Find("aws:s3/bucketReplicationConfig:BucketReplicationConfig")
			require.Len(t, repl, 1)
			for _, v := range versionings {
				assert.Contains(t, repl[0].Dependencies, v.URN)
			}
			regions := map[string]bool{}
			for _, b := range p.Find(TypeBucket) {
				regions[p.providerRegion(t, b)] = true
			}
			assert.Equal(t, map[string]bool{p.Config.Region: true, p.Config.ReplicaRegion: true}, regions)
		})
	}
}

// providerRegion returns the region of the explicit provider r uses.
func (p *PlanResult) providerRegion(t *testing.T, r Resource) string {
	t.Helper()
	urn := r.Provider[:max(0, strings.LastIndex(r.Provider, "::"))]
	prov, ok := p.ByURN(urn)
	require.True(t, ok, "%s %s uses no explicit provider (%q)", r.Type, r.Name, r.Provider)
	require.Equal(t, TypeProvider, prov.Type)
	return s(prov.Inputs, "region")
}

// taggableArgs maps every AWS resource type the program uses to its SDK Args struct; a type is
// taggable when the struct has a Tags field.
var taggableArgs = map[string]any{
	"aws:ec2/vpc:Vpc": ec2.VpcArgs{}, "aws:ec2/subnet:Subnet": ec2.SubnetArgs{},
	"aws:ec2/internetGateway:InternetGateway": ec2.InternetGatewayArgs{}, "aws:ec2/routeTable:RouteTable": ec2.RouteTableArgs{},
	"aws:ec2/route:Route": ec2.RouteArgs{}, "aws:ec2/routeTableAssociation:RouteTableAssociation": ec2.RouteTableAssociationArgs{},
	"aws:ec2/eip:Eip": ec2.EipArgs{}, "aws:ec2/natGateway:NatGateway": ec2.NatGatewayArgs{},
	"aws:ec2/networkAcl:NetworkAcl": ec2.NetworkAclArgs{}, "aws:ec2/networkAclRule:NetworkAclRule": ec2.NetworkAclRuleArgs{},
	"aws:ec2/flowLog:FlowLog": ec2.FlowLogArgs{}, TypeSecurityGroup: ec2.SecurityGroupArgs{},
	TypeIngressRule: vpc.SecurityGroupIngressRuleArgs{}, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": vpc.SecurityGroupEgressRuleArgs{},
	TypeCluster: cloudhsmv2.ClusterArgs{}, TypeHSM: cloudhsmv2.HsmArgs{},
	TypeKMSKey: kms.KeyArgs{}, "aws:kms/alias:Alias": kms.AliasArgs{},
	TypeLogGroup: cloudwatch.LogGroupArgs{}, "aws:cloudwatch/logMetricFilter:LogMetricFilter": cloudwatch.LogMetricFilterArgs{},
	TypeMetricAlarm: cloudwatch.MetricAlarmArgs{}, "aws:cloudwatch/dashboard:Dashboard": cloudwatch.DashboardArgs{},
	TypeTopic: sns.TopicArgs{}, "aws:sns/topicSubscription:TopicSubscription": sns.TopicSubscriptionArgs{},
	"aws:iam/role:Role": iam.RoleArgs{}, "aws:iam/rolePolicy:RolePolicy": iam.RolePolicyArgs{},
	"aws:iam/instanceProfile:InstanceProfile": iam.InstanceProfileArgs{},
	TypeBucket: s3.BucketV2Args{}, TypeBucketPAB: s3.BucketPublicAccessBlockArgs{},
	"aws:s3/bucketVersioningV2:BucketVersioningV2": s3.BucketVersioningV2Args{}, TypeBucketSSE: s3.BucketServerSideEncryptionConfigurationV2Args{},
	"aws:s3/bucketPolicy:BucketPolicy":                                     s3.BucketPolicyArgs{},
	"aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2": s3.BucketLifecycleConfigurationV2Args{},
	"aws:s3/bucketReplicationConfig:BucketReplicationConfig":               s3.BucketReplicationConfigArgs{},
}

func taggable(t *testing.T, typ string) bool {
	t.Helper()
	args, ok := taggableArgs[typ]
	require.True(t, ok, "resource type %s is not classified in taggableArgs", typ)
	_, has := reflect.TypeOf(args).FieldByName("Tags")
	return has
}

// defaultTags reads a provider's default tags (provider inputs may arrive JSON-encoded).
func defaultTags(t *testing.T, prov Resource) map[string]any {
	t.Helper()
	raw := prov.Inputs["defaultTags"]
	if text, ok := raw.(string); ok {
		require.NoError(t, json.Unmarshal([]byte(text), &raw))
	}
	m, _ := raw.(map[string]any)
	tags, _ := m["tags"].(map[string]any)
	return tags
}

func TestEveryTaggableResourceTaggedThroughProviderDefaultTags(t *testing.T) {
	for stack, p := range stackPlans(t) {
		t.Run(stack, func(t *testing.T) {
			tagged := 0
			for _, prov := range p.Find(TypeProvider) {
				tags := defaultTags(t, prov)
				for _, k := range RequiredTags {
					assert.NotEmpty(t, tags[k], "provider %s lacks default tag %s", prov.Name, k)
				}
				assert.Equal(t, p.Config.Environment, tags["Environment"])
			}
			for _, r := range p.Resources {
				if !r.Custom || strings.HasPrefix(r.Type, "pulumi:") {
					continue
				}
				if taggable(t, r.Type) {
					tagged++
				}
				p.providerRegion(t, r) // explicit, default-tagged provider: never the default one
			}
			assert.Greater(t, tagged, 30, "taggable resources found")
		})
	}
}

func TestEveryResourceParentedToItsComponent(t *testing.T) {
	for stack, p := range stackPlans(t) {
		t.Run(stack, func(t *testing.T) {
			kinds := map[string]bool{}
			for _, r := range p.Resources {
				if r.IsComponent() {
					kinds[strings.TrimPrefix(r.Type, infra.TypePrefix)] = true
					continue
				}
				if !r.Custom || strings.HasPrefix(r.Type, "pulumi:") {
					continue
				}
				parent, ok := p.ByURN(r.Parent)
				require.True(t, ok, "%s %s has no recorded parent", r.Type, r.Name)
				assert.True(t, parent.IsComponent(), "%s %s is parented to %s", r.Type, r.Name, parent.Type)
			}
			assert.Equal(t, map[string]bool{"Network": true, "CloudHSM": true, "Keys": true, "Backup": true,
				"IAM": true, "Monitoring": true}, kinds)
		})
	}
}

func TestAlarmsCoverTheMetricsBySeverity(t *testing.T) {
	for stack, p := range stackPlans(t) {
		t.Run(stack, func(t *testing.T) {
			clusterID := s(p.Outputs, "clusterId")
			topics := map[string]string{}
			for _, sev := range infra.Severities {
				topics[string(sev)] = s(p.Outputs, string(sev)+"TopicArn")
			}
			metrics := map[string]string{}
			for _, a := range p.Find(TypeMetricAlarm) {
				metrics[s(a.Inputs, "metricName")] = s(a.Inputs, "namespace")
				if s(a.Inputs, "namespace") == infra.CloudHSMNamespace {
					assert.Equal(t, map[string]any{"ClusterId": clusterID}, a.Inputs["dimensions"])
				}
				assert.Contains(t, []any{topics["critical"], topics["warning"]}, list(a.Inputs, "alarmActions")[0])
			}
			for _, m := range []string{"HsmUnhealthy", "HsmTemperature", "HsmSessionCount", "HsmKeysTokenOccupied"} {
				assert.Equal(t, infra.CloudHSMNamespace, metrics[m], m)
			}
			assert.Equal(t, infra.AuditMetricsNamespace, metrics["LoginFailures"])
			filters := p.Find("aws:cloudwatch/logMetricFilter:LogMetricFilter")
			require.Len(t, filters, 1)
			assert.Contains(t, s(filters[0].Inputs, "pattern"), "RET_USER_LOGIN_FAILURE")
			assert.Equal(t, "/aws/cloudhsm/"+clusterID, s(filters[0].Inputs, "logGroupName"))
			assert.Len(t, p.Find(TypeTopic), 3)
			assert.Len(t, p.Find("aws:cloudwatch/dashboard:Dashboard"), 1)
		})
	}
}

func TestOutputsAndStackReference(t *testing.T) {
	p := stackPlans(t)
	for stack, plan := range p {
		for _, k := range []string{"vpcId", "hsmSubnetIds", "clusterId", "hsmIps", "clusterSecurityGroupId",
			"appSecurityGroupId", "logsKeyArn", "snsKeyArn", "backupKeyArn", "backupBucket", "backupReplicaBucket",
			"criticalTopicArn", "warningTopicArn", "operationalTopicArn", "hsmclientConfig"} {
			assert.NotEmpty(t, plan.Outputs[k], "%s output %s", stack, k)
		}
		assert.Contains(t, s(plan.Outputs, "hsmclientConfig"), s(plan.Outputs, "clusterId"))
	}
	assert.Empty(t, p["prod"].Find(TypeStackReference), "prod must not reference another stack (no cycle)")
	refs := p["dr"].Find(TypeStackReference)
	require.Len(t, refs, 1)
	assert.Equal(t, "personapass/personapass-hsm/prod", s(refs[0].Inputs, "name"))
	assert.Equal(t, "cluster-primary0001", p["dr"].Outputs["primaryClusterId"])
	assert.Contains(t, s(p["dr"].Outputs, "hsmclientConfig"), "slot: 1")
	assert.Equal(t, []any{"10.0.240.10", "10.0.240.138", "10.0.241.10"}, p["prod"].Outputs["hsmIps"])
}

func TestHSMNetworkACLAdmitsOnlyAppAndHSMSubnets(t *testing.T) {
	for stack, p := range stackPlans(t) {
		t.Run(stack, func(t *testing.T) {
			l, err := infra.PlanLayout(p.Config.VpcCIDR, p.Config.HSMCount)
			require.NoError(t, err)
			allowed := map[string]bool{}
			for _, pfx := range append(slices.Clone(l.App), l.HSM...) {
				allowed[pfx.String()] = true
			}
			rules := p.Find("aws:ec2/networkAclRule:NetworkAclRule")
			require.Len(t, rules, len(infra.HSMACLRules(l)))
			for _, r := range rules {
				assert.True(t, allowed[s(r.Inputs, "cidrBlock")], "%s admits %s", r.Name, s(r.Inputs, "cidrBlock"))
				assert.Equal(t, "allow", s(r.Inputs, "ruleAction"))
				assert.Equal(t, "tcp", s(r.Inputs, "protocol"))
			}
			acls := p.Find("aws:ec2/networkAcl:NetworkAcl")
			require.Len(t, acls, 1)
			assert.Len(t, list(acls[0].Inputs, "subnetIds"), p.Config.HSMCount)
		})
	}
}
