package stacks

import (
	"fmt"
	"slices"
	"strings"

	"github.com/personapass/hsm/infra"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// RequiredTags are the tag keys every taggable resource carries through the providers' default tags.
var RequiredTags = []string{"Project", "Environment", "Owner", "CostCentre"}

// PKCS11Module is where the CloudHSM Client SDK 5 installs its PKCS#11 library.
const PKCS11Module = "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so"

// operatorMFAMaxAgeSeconds bounds the age of an operator's MFA sign-in.
const operatorMFAMaxAgeSeconds = 3600

// Stack is everything one stack deploys, so that outputs, tests and hsmplan can reach it.
type Stack struct {
	Config          Config
	Account         infra.Account
	Zones           []string
	Layout          infra.Layout
	Provider        *aws.Provider
	ReplicaProvider *aws.Provider
	Keys            *infra.Keys
	Network         *infra.Network
	CloudHSM        *infra.CloudHSM
	Monitoring      *infra.Monitoring
	Backup          *infra.Backup
	IAM             *infra.IAM
	// PrimaryRef reads the primary stack's outputs; set only on a dr stack with primaryStack.
	PrimaryRef *pulumi.StackReference
}

// Prefix is the stack's name prefix, e.g. "personapass-hsm-prod".
func (c Config) Prefix() string { return Project + "-" + c.Environment }

// Program is the Pulumi program: it reads and validates the stack's config, builds the stack and
// exports its outputs.
func Program(ctx *pulumi.Context) error {
	_, err := run(ctx)
	return err
}

// run builds the stack from ctx's config and exports its outputs, which it returns.
func run(ctx *pulumi.Context) (pulumi.Map, error) {
	cfg, err := ParseConfig(ctx.GetConfig)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st, err := Build(ctx, cfg)
	if err != nil {
		return nil, err
	}
	outputs := st.Outputs()
	for k, v := range outputs {
		ctx.Export(k, v)
	}
	return outputs, nil
}

func (c Config) defaultTags() pulumi.StringMap {
	return pulumi.StringMap{
		"Project": pulumi.String(Project), "Environment": pulumi.String(c.Environment),
		"Owner": pulumi.String(c.Owner), "CostCentre": pulumi.String(c.CostCentre),
	}
}

func (c Config) newProvider(ctx *pulumi.Context, name, region string) (*aws.Provider, error) {
	return aws.NewProvider(ctx, name, &aws.ProviderArgs{
		Region:      pulumi.String(region),
		DefaultTags: aws.ProviderDefaultTagsArgs{Tags: c.defaultTags()},
	})
}

// CloudHSMServiceName is the VPC endpoint service whose AZs tell where CloudHSM is offered.
func CloudHSMServiceName(region string) string {
	return fmt.Sprintf("com.amazonaws.%s.cloudhsmv2", region)
}

// Build composes the components for a validated config and returns them.
func Build(ctx *pulumi.Context, cfg Config) (*Stack, error) {
	st := &Stack{Config: cfg}
	var err error
	if st.Provider, err = cfg.newProvider(ctx, "aws-"+cfg.Region, cfg.Region); err != nil {
		return nil, err
	}
	if st.ReplicaProvider, err = cfg.newProvider(ctx, "aws-"+cfg.ReplicaRegion, cfg.ReplicaRegion); err != nil {
		return nil, err
	}
	inRegion := pulumi.Provider(st.Provider)
	ident, err := aws.GetCallerIdentity(ctx, &aws.GetCallerIdentityArgs{}, inRegion)
	if err != nil {
		return nil, err
	}
	part, err := aws.GetPartition(ctx, &aws.GetPartitionArgs{}, inRegion)
	if err != nil {
		return nil, err
	}
	st.Account = infra.Account{ID: ident.AccountId, Partition: part.Partition, Region: cfg.Region}
	svc, err := ec2.LookupVpcEndpointService(ctx, &ec2.LookupVpcEndpointServiceArgs{
		ServiceName: pulumi.StringRef(CloudHSMServiceName(cfg.Region)),
	}, inRegion)
	if err != nil {
		return nil, fmt.Errorf("looking up the AZs that offer CloudHSM in %s: %w", cfg.Region, err)
	}
	zones := slices.Sorted(slices.Values(svc.AvailabilityZones))
	if err := cfg.ValidateZones(zones); err != nil {
		return nil, err
	}
	st.Zones = zones[:cfg.HSMCount]
	if st.Layout, err = infra.PlanLayout(cfg.VpcCIDR, cfg.HSMCount); err != nil {
		return nil, fmt.Errorf("%s: %w", FullKey(KeyVpcCIDR), err)
	}
	prefix := cfg.Prefix()
	opts := []pulumi.ResourceOption{pulumi.Providers(st.Provider)}

	if st.Keys, err = infra.NewKeys(ctx, "keys", infra.KeysArgs{Prefix: prefix, Account: st.Account}, opts...); err != nil {
		return nil, err
	}
	if st.Network, err = infra.NewNetwork(ctx, "network", infra.NetworkArgs{
		Prefix: prefix, Account: st.Account, Layout: st.Layout, Zones: st.Zones,
		LogsKeyArn: st.Keys.Logs.Key.Arn, LogRetentionDays: cfg.LogRetentionDays,
	}, opts...); err != nil {
		return nil, err
	}
	var subnetIDs []pulumi.StringInput
	for _, s := range st.Network.HSMSubnets {
		subnetIDs = append(subnetIDs, s.ID())
	}
	var addrs []string
	for _, a := range st.Layout.HSMAddr {
		addrs = append(addrs, a.String())
	}
	if st.CloudHSM, err = infra.NewCloudHSM(ctx, "cloudhsm", infra.CloudHSMArgs{
		Prefix: prefix, HSMType: cfg.HSMType, Mode: cfg.HSMMode, SubnetIDs: subnetIDs, Zones: st.Zones,
		HSMAddrs: addrs, AppSGID: st.Network.AppSecurityGroup.ID(), LogsKeyArn: st.Keys.Logs.Key.Arn,
		SourceBackupID: cfg.SourceBackupID, LogRetentionDays: cfg.LogRetentionDays,
	}, opts...); err != nil {
		return nil, err
	}
	if st.Monitoring, err = infra.NewMonitoring(ctx, "monitoring", infra.MonitoringArgs{
		Prefix: prefix, Region: cfg.Region, ClusterID: st.CloudHSM.Cluster.ClusterId,
		AuditLogGroup: st.CloudHSM.AuditLogGroup.Name, SNSKeyArn: st.Keys.SNS.Key.Arn,
		Limits: infra.HSMTypes[cfg.HSMType], Subscriptions: cfg.Alerts,
	}, opts...); err != nil {
		return nil, err
	}
	if st.Backup, err = infra.NewBackup(ctx, "backup", infra.BackupArgs{
		Prefix: prefix, Account: st.Account, KeyArn: st.Keys.Backups.Key.Arn,
		ReplicaRegion: cfg.ReplicaRegion, ReplicaProvider: st.ReplicaProvider,
		TransitionDays: cfg.BackupTransitionDays, ExpirationDays: cfg.BackupExpirationDays,
	}, opts...); err != nil {
		return nil, err
	}
	if st.IAM, err = infra.NewIAM(ctx, "iam", infra.IAMArgs{
		Prefix: prefix, Account: st.Account, ClusterID: st.CloudHSM.Cluster.ClusterId,
		BackupBucketArn: st.Backup.Bucket.Arn, BackupKeyArn: st.Keys.Backups.Key.Arn,
		OpsTopicArn: st.Monitoring.Topics[infra.Operational].Arn, OperatorMFAMaxAgeSeconds: operatorMFAMaxAgeSeconds,
	}, opts...); err != nil {
		return nil, err
	}
	if cfg.Role == DR && cfg.PrimaryStack != "" {
		if st.PrimaryRef, err = pulumi.NewStackReference(ctx, "primary", &pulumi.StackReferenceArgs{
			Name: pulumi.String(cfg.PrimaryStack),
		}); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Outputs returns the stack outputs.
func (st *Stack) Outputs() pulumi.Map {
	ids := func(subnets []*ec2.Subnet) pulumi.StringArray {
		out := pulumi.StringArray{}
		for _, s := range subnets {
			out = append(out, s.ID())
		}
		return out
	}
	hsmIPs := st.CloudHSM.HSMAddresses()
	out := pulumi.Map{
		"role":                   pulumi.String(string(st.Config.Role)),
		"region":                 pulumi.String(st.Config.Region),
		"vpcId":                  st.Network.VPC.ID(),
		"vpcCidr":                pulumi.String(st.Layout.VPC.String()),
		"availabilityZones":      pulumi.ToStringArray(st.Zones),
		"hsmSubnetIds":           ids(st.Network.HSMSubnets),
		"appSubnetIds":           ids(st.Network.AppSubnets),
		"publicSubnetIds":        ids(st.Network.PublicSubnets),
		"clusterId":              st.CloudHSM.Cluster.ClusterId,
		"clusterSecurityGroupId": st.CloudHSM.Cluster.SecurityGroupId,
		"appSecurityGroupId":     st.Network.AppSecurityGroup.ID(),
		"hsmIps":                 hsmIPs,
		"auditLogGroup":          st.CloudHSM.AuditLogGroup.Name,
		"logsKeyArn":             st.Keys.Logs.Key.Arn,
		"snsKeyArn":              st.Keys.SNS.Key.Arn,
		"backupKeyArn":           st.Keys.Backups.Key.Arn,
		"backupReplicaKeyArn":    st.Backup.ReplicaKey.Key.Arn,
		"backupBucket":           st.Backup.Bucket.Bucket,
		"backupReplicaBucket":    st.Backup.Replica.Bucket,
		"criticalTopicArn":       st.Monitoring.Topics[infra.Critical].Arn,
		"warningTopicArn":        st.Monitoring.Topics[infra.Warning].Arn,
		"operationalTopicArn":    st.Monitoring.Topics[infra.Operational].Arn,
		"serviceRoleArn":         st.IAM.ServiceRole.Arn,
		"appRoleArn":             st.IAM.AppRole.Arn,
		"appInstanceProfile":     st.IAM.InstanceProfile.Name,
		"operatorRoleArn":        st.IAM.OperatorRole.Arn,
	}
	local := clientCluster{name: st.Config.Environment + "-" + st.Config.Region, region: st.Config.Region}
	if st.PrimaryRef == nil {
		out["hsmclientConfig"] = pulumi.All(st.CloudHSM.Cluster.ClusterId, hsmIPs).ApplyT(func(v []any) string {
			local.id, local.ips = v[0].(string), v[1].([]string)
			return hsmClientConfig(local)
		}).(pulumi.StringOutput)
		return out
	}
	primaryID := st.PrimaryRef.GetStringOutput(pulumi.String("clusterId"))
	primaryIPs := st.PrimaryRef.GetOutput(pulumi.String("hsmIps"))
	primaryRegion := st.PrimaryRef.GetStringOutput(pulumi.String("region"))
	out["primaryClusterId"] = primaryID
	out["hsmclientConfig"] = pulumi.All(primaryID, primaryIPs, primaryRegion, st.CloudHSM.Cluster.ClusterId, hsmIPs).ApplyT(
		func(v []any) string {
			primary := clientCluster{name: "primary-" + v[2].(string), region: v[2].(string), id: v[0].(string), ips: anyStrings(v[1])}
			local.id, local.ips = v[3].(string), v[4].([]string)
			return hsmClientConfig(primary, local)
		}).(pulumi.StringOutput)
	return out
}

type clientCluster struct {
	name, id, region string
	ips              []string
}

func anyStrings(v any) []string {
	var out []string
	if list, ok := v.([]any); ok {
		for _, x := range list {
			out = append(out, fmt.Sprint(x))
		}
	}
	return out
}

// hsmClientConfig renders the hsmclient YAML for the application tier: the clusters in priority
// order, each a slot of the CloudHSM PKCS#11 library (several clusters need Client SDK 5 multi-slot,
// added with configure-pkcs11 add-cluster), with the commands that point the client at them.
func hsmClientConfig(clusters ...clientCluster) string {
	var b strings.Builder
	b.WriteString("# hsmclient configuration (generated by the personapass-hsm Pulumi program).\n")
	b.WriteString("# Point the CloudHSM Client SDK 5 at the cluster(s) first; each needs its trust anchor:\n")
	if len(clusters) == 1 {
		fmt.Fprintf(&b, "#   sudo /opt/cloudhsm/bin/configure-pkcs11 -a %s   # %s; trust anchor in /opt/cloudhsm/etc/customerCA.crt\n",
			strings.Join(clusters[0].ips, " "), clusters[0].id)
	} else {
		for _, c := range clusters {
			fmt.Fprintf(&b, "#   sudo /opt/cloudhsm/bin/configure-pkcs11 add-cluster --cluster-id %s --region %s --hsm-ca-cert /opt/cloudhsm/etc/%s-customerCA.crt   # HSMs %s\n",
				c.id, c.region, c.id, strings.Join(c.ips, " "))
		}
	}
	b.WriteString("# The crypto user's PIN (user:password) comes from the environment, never from this file.\n")
	b.WriteString("clusters:\n")
	for i, c := range clusters {
		fmt.Fprintf(&b, "  - name: %s\n    module: %s\n    slot: %d\n    pin_env: HSM_PIN\n", c.name, PKCS11Module, i)
	}
	return b.String()
}
