package infra

import (
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// IAMArgs configures the IAM component.
type IAMArgs struct {
	Prefix          string
	Account         Account
	ClusterID       pulumi.StringInput
	BackupBucketArn pulumi.StringInput
	BackupKeyArn    pulumi.StringInput
	OpsTopicArn     pulumi.StringInput
	// OperatorMFAMaxAgeSeconds bounds how old the operator's MFA sign-in may be.
	OperatorMFAMaxAgeSeconds int
}

// IAM holds the stack's roles: HSM operations automation, the application tier (with its
// instance profile) and human operators (MFA required).
type IAM struct {
	pulumi.ResourceState

	ServiceRole     *iam.Role
	AppRole         *iam.Role
	InstanceProfile *iam.InstanceProfile
	OperatorRole    *iam.Role
}

// AppMetricsNamespace is the only CloudWatch namespace the application role may write.
const AppMetricsNamespace = "PersonaPass/HSM"

// NewIAM creates the IAM component (type personapass:infra:IAM).
func NewIAM(ctx *pulumi.Context, name string, args IAMArgs, opts ...pulumi.ResourceOption) (*IAM, error) {
	c := &IAM{}
	if err := registerComponent(ctx, "IAM", name, c, opts...); err != nil {
		return nil, err
	}
	acct := args.Account
	clusterArn := args.ClusterID.ToStringOutput().ApplyT(func(id string) string {
		return acct.ARN("cloudhsm", "cluster/"+id)
	}).(pulumi.StringOutput)
	backupArns := acct.ARN("cloudhsm", "backup/*")
	describe := Allow("DescribeCloudHSM", []string{"cloudhsm:DescribeClusters", "cloudhsm:DescribeBackups"}, "*")

	var err error
	c.ServiceRole, err = newRoleWithPolicy(ctx, name+"-service", c, roleSpec{
		description: "HSM operations automation (SSM Automation): backups, copies to the DR region, reports",
		trust:       assumeRolePolicy(ServicePrincipal("ssm.amazonaws.com"), sourceAccount(acct)),
		policy: policyJSON(func(v []string) PolicyDocument {
			cluster, bucket, key, topic := v[0], v[1], v[2], v[3]
			return NewPolicy(describe,
				Allow("ManageBackups", []string{"cloudhsm:CopyBackupToRegion", "cloudhsm:ModifyBackupAttributes",
					"cloudhsm:TagResource", "cloudhsm:ListTags"}, cluster, backupArns),
				Allow("WriteExports", []string{"s3:PutObject", "s3:GetObject"}, bucket+"/*"),
				Allow("ListExports", []string{"s3:ListBucket"}, bucket),
				Allow("UseBackupKey", []string{"kms:GenerateDataKey", "kms:Decrypt"}, key),
				Allow("Notify", []string{"sns:Publish"}, topic),
			)
		}, clusterArn, args.BackupBucketArn, args.BackupKeyArn, args.OpsTopicArn),
	})
	if err != nil {
		return nil, err
	}

	c.AppRole, err = newRoleWithPolicy(ctx, name+"-app", c, roleSpec{
		description: "PersonaPass application tier (EC2): discovers the cluster, publishes its metrics, reads its HSM credentials",
		trust:       assumeRolePolicy(ServicePrincipal("ec2.amazonaws.com"), nil),
		policy: policyJSON(func([]string) PolicyDocument {
			metrics := Allow("PublishMetrics", []string{"cloudwatch:PutMetricData"}, "*")
			metrics.Condition = map[string]map[string]any{"StringEquals": {"cloudwatch:namespace": AppMetricsNamespace}}
			return NewPolicy(
				Allow("DescribeClusters", []string{"cloudhsm:DescribeClusters"}, "*"),
				metrics,
				Allow("ReadHSMCredentials", []string{"ssm:GetParameter", "ssm:GetParameters"},
					acct.ARN("ssm", "parameter/"+args.Prefix+"/hsm/*")),
			)
		}),
	})
	if err != nil {
		return nil, err
	}
	c.InstanceProfile, err = iam.NewInstanceProfile(ctx, name+"-app-profile", &iam.InstanceProfileArgs{
		Role: c.AppRole.Name,
	}, child(c)...)
	if err != nil {
		return nil, err
	}

	c.OperatorRole, err = newRoleWithPolicy(ctx, name+"-operator", c, roleSpec{
		description: "Human CloudHSM operators; assumable only with MFA",
		trust: assumeRolePolicy(map[string]any{"AWS": acct.RootARN()}, map[string]map[string]any{
			"Bool":            {"aws:MultiFactorAuthPresent": "true"},
			"NumericLessThan": {"aws:MultiFactorAuthAge": args.OperatorMFAMaxAgeSeconds},
		}),
		policy: policyJSON(func(v []string) PolicyDocument {
			return NewPolicy(describe,
				Allow("OperateCluster", []string{"cloudhsm:InitializeCluster", "cloudhsm:CreateHsm", "cloudhsm:DeleteHsm",
					"cloudhsm:CopyBackupToRegion", "cloudhsm:ModifyCluster",
					"cloudhsm:ModifyBackupAttributes", "cloudhsm:TagResource", "cloudhsm:ListTags"}, v[0], backupArns),
				Allow("ReadWriteExports", []string{"s3:PutObject", "s3:GetObject", "s3:ListBucket"}, v[1], v[1]+"/*"),
				Allow("UseBackupKey", []string{"kms:GenerateDataKey", "kms:Decrypt"}, v[2]),
			)
		}, clusterArn, args.BackupBucketArn, args.BackupKeyArn),
	})
	if err != nil {
		return nil, err
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"serviceRoleArn": c.ServiceRole.Arn, "appRoleArn": c.AppRole.Arn, "operatorRoleArn": c.OperatorRole.Arn,
	})
}

type roleSpec struct {
	description string
	trust       pulumi.String
	policy      pulumi.StringOutput
}

// newRoleWithPolicy creates a role and its inline policy, both children of parent.
func newRoleWithPolicy(ctx *pulumi.Context, name string, parent pulumi.Resource, spec roleSpec) (*iam.Role, error) {
	role, err := iam.NewRole(ctx, name+"-role", &iam.RoleArgs{
		Description: pulumi.String(spec.description), AssumeRolePolicy: spec.trust,
	}, child(parent)...)
	if err != nil {
		return nil, err
	}
	_, err = iam.NewRolePolicy(ctx, name+"-policy", &iam.RolePolicyArgs{Role: role.ID(), Policy: spec.policy}, child(parent)...)
	return role, err
}
