package infra

import (
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudhsmv2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/vpc"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// HSMTypeLimits are the capacity limits of one HSM type that the alarms measure against.
type HSMTypeLimits struct {
	// Sessions is the client connections a cluster accepts (HsmSessionCount).
	Sessions int
	// Keys is the keys a cluster stores (token plus session keys).
	Keys int
	// ShutdownTemperatureC is the processor temperature at which the HSM shuts down.
	ShutdownTemperatureC int
}

// HSMTypes lists the HSM types a new cluster may use. hsm1.medium is absent on purpose: AWS no
// longer accepts new hsm1.medium clusters.
var HSMTypes = map[string]HSMTypeLimits{
	"hsm2m.medium": {Sessions: 900, Keys: 16666, ShutdownTemperatureC: 110},
}

// HSMModes are the cluster modes of hsm2m.medium. FIPS is FIPS 140 level 3.
var HSMModes = []string{"FIPS", "NON_FIPS"}

// CloudHSMArgs configures the CloudHSM component.
type CloudHSMArgs struct {
	Prefix     string
	HSMType    string
	Mode       string
	SubnetIDs  []pulumi.StringInput
	Zones      []string
	HSMAddrs   []string
	AppSGID    pulumi.StringInput
	LogsKeyArn pulumi.StringInput
	// SourceBackupID restores the cluster from a backup (the DR stack); empty for a new cluster.
	SourceBackupID   string
	LogRetentionDays int
}

// CloudHSM is a CloudHSM v2 cluster with one HSM per AZ, its audit log group and the ingress rule
// admitting the application security group to the HSM ports.
type CloudHSM struct {
	pulumi.ResourceState

	Cluster       *cloudhsmv2.Cluster
	AuditLogGroup *cloudwatch.LogGroup
	HSMs          []*cloudhsmv2.Hsm
}

// ClusterIgnoreChanges are the cluster inputs whose change would replace the cluster (and
// destroy its keys); the program ignores them once the cluster exists.
var ClusterIgnoreChanges = []string{"hsmType", "mode", "subnetIds", "sourceBackupIdentifier"}

// HSMIgnoreChanges are the HSM inputs whose change would replace an HSM.
var HSMIgnoreChanges = []string{"clusterId", "subnetId", "availabilityZone", "ipAddress"}

// NewCloudHSM creates the CloudHSM component (type personapass:infra:CloudHSM). The audit log
// group /aws/cloudhsm/<cluster-id> is created after the cluster and before any HSM, so the
// service writes into a group with our retention and key; the first HSM is created before the
// others because the cluster's CSR exists only once it does.
func NewCloudHSM(ctx *pulumi.Context, name string, args CloudHSMArgs, opts ...pulumi.ResourceOption) (*CloudHSM, error) {
	if len(args.SubnetIDs) != len(args.Zones) || len(args.HSMAddrs) != len(args.Zones) {
		return nil, fmt.Errorf("cloudhsm %s: %d subnets and %d addresses for %d zones",
			name, len(args.SubnetIDs), len(args.HSMAddrs), len(args.Zones))
	}
	c := &CloudHSM{}
	if err := registerComponent(ctx, "CloudHSM", name, c, opts...); err != nil {
		return nil, err
	}
	clusterArgs := &cloudhsmv2.ClusterArgs{
		HsmType:   pulumi.String(args.HSMType),
		Mode:      pulumi.String(args.Mode),
		SubnetIds: pulumi.StringArray(args.SubnetIDs),
		Tags:      nameTag(args.Prefix + "-cluster"),
	}
	if args.SourceBackupID != "" {
		clusterArgs.SourceBackupIdentifier = pulumi.String(args.SourceBackupID)
	}
	var err error
	c.Cluster, err = cloudhsmv2.NewCluster(ctx, name+"-cluster", clusterArgs, stateful(c, ClusterIgnoreChanges...)...)
	if err != nil {
		return nil, err
	}
	c.AuditLogGroup, err = cloudwatch.NewLogGroup(ctx, name+"-audit-logs", &cloudwatch.LogGroupArgs{
		Name:            pulumi.Sprintf("/aws/cloudhsm/%s", c.Cluster.ClusterId),
		KmsKeyId:        args.LogsKeyArn,
		RetentionInDays: pulumi.Int(args.LogRetentionDays),
	}, append(stateful(c), pulumi.DependsOn([]pulumi.Resource{c.Cluster}))...)
	if err != nil {
		return nil, err
	}
	for i := range args.Zones {
		deps := []pulumi.Resource{c.AuditLogGroup}
		if i > 0 {
			deps = append(deps, c.HSMs[0])
		}
		hsm, err := cloudhsmv2.NewHsm(ctx, fmt.Sprintf("%s-hsm-%d", name, i), &cloudhsmv2.HsmArgs{
			ClusterId: c.Cluster.ClusterId,
			SubnetId:  args.SubnetIDs[i],
			IpAddress: pulumi.String(args.HSMAddrs[i]),
		}, append(stateful(c, HSMIgnoreChanges...), pulumi.DependsOn(deps))...)
		if err != nil {
			return nil, err
		}
		c.HSMs = append(c.HSMs, hsm)
	}
	// The only way in to the HSM ports: from the application security group, never a CIDR.
	ports := fmt.Sprintf("CloudHSM client ports %d-%d", HSMPortFirst, HSMPortLast)
	if _, err := vpc.NewSecurityGroupIngressRule(ctx, name+"-app-ingress", &vpc.SecurityGroupIngressRuleArgs{
		SecurityGroupId: c.Cluster.SecurityGroupId, ReferencedSecurityGroupId: args.AppSGID,
		Description: pulumi.String(ports + " from the application tier"),
		IpProtocol:  pulumi.String("tcp"), FromPort: pulumi.Int(HSMPortFirst), ToPort: pulumi.Int(HSMPortLast),
	}, child(c)...); err != nil {
		return nil, err
	}
	if _, err := vpc.NewSecurityGroupEgressRule(ctx, name+"-app-egress", &vpc.SecurityGroupEgressRuleArgs{
		SecurityGroupId: args.AppSGID, ReferencedSecurityGroupId: c.Cluster.SecurityGroupId,
		Description: pulumi.String(ports + " to the cluster"),
		IpProtocol:  pulumi.String("tcp"), FromPort: pulumi.Int(HSMPortFirst), ToPort: pulumi.Int(HSMPortLast),
	}, child(c)...); err != nil {
		return nil, err
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"clusterId": c.Cluster.ClusterId, "securityGroupId": c.Cluster.SecurityGroupId,
	})
}

// HSMAddresses returns the HSMs' IP addresses in AZ order.
func (c *CloudHSM) HSMAddresses() pulumi.StringArrayOutput {
	ips := pulumi.StringArray{}
	for _, h := range c.HSMs {
		ips = append(ips, h.IpAddress)
	}
	return ips.ToStringArrayOutput()
}
