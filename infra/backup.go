package infra

import (
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/s3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// BackupArgs configures the Backup component.
type BackupArgs struct {
	Prefix  string
	Account Account
	// KeyArn encrypts the primary bucket.
	KeyArn pulumi.StringInput
	// ReplicaRegion is the other region; ReplicaProvider deploys there.
	ReplicaRegion   string
	ReplicaProvider pulumi.ProviderResource
	// TransitionDays moves objects to Glacier Instant Retrieval; ExpirationDays deletes them.
	TransitionDays int
	ExpirationDays int
}

// Backup is the stack's backup bucket and its replica in the other region, each encrypted with
// its own customer key. The buckets hold what the operators export around the cluster (CSR,
// signed certificate and trust anchor, wrapped-key exports, audit log exports); CloudHSM's own
// cluster backups are kept by the service and copied with `aws cloudhsmv2 copy-backup-to-region`.
type Backup struct {
	pulumi.ResourceState

	Bucket     *s3.BucketV2
	Replica    *s3.BucketV2
	ReplicaKey *CustomerKey
}

// NewBackup creates the Backup component (type personapass:infra:Backup).
func NewBackup(ctx *pulumi.Context, name string, args BackupArgs, opts ...pulumi.ResourceOption) (*Backup, error) {
	c := &Backup{}
	if err := registerComponent(ctx, "Backup", name, c, opts...); err != nil {
		return nil, err
	}
	acct := args.Account
	replicaAcct := Account{ID: acct.ID, Partition: acct.Partition, Region: args.ReplicaRegion}
	inReplica := pulumi.Provider(args.ReplicaProvider)
	var err error
	c.ReplicaKey, err = newCustomerKey(ctx, name+"-replica-key", args.Prefix+"-backups-replica",
		fmt.Sprintf("PersonaPass HSM backup replica encryption (%s, %s)", args.Prefix, args.ReplicaRegion),
		replicaAcct, []KeyUser{{
			Service: "s3.amazonaws.com", Actions: []string{"kms:Decrypt", "kms:GenerateDataKey*"},
			Condition: sourceAccount(acct),
		}}, child(c, inReplica)...)
	if err != nil {
		return nil, err
	}
	primary, err := newSecureBucket(ctx, name, c, acct, args, args.KeyArn)
	if err != nil {
		return nil, err
	}
	replica, err := newSecureBucket(ctx, name+"-replica", c, replicaAcct, args, c.ReplicaKey.Key.Arn, inReplica)
	if err != nil {
		return nil, err
	}
	c.Bucket, c.Replica = primary.bucket, replica.bucket

	role, err := newRoleWithPolicy(ctx, name+"-replication", c, roleSpec{
		description: "Lets S3 replicate the backup bucket to its replica in " + args.ReplicaRegion,
		trust:       assumeRolePolicy(ServicePrincipal("s3.amazonaws.com"), sourceAccount(acct)),
		policy: policyJSON(func(v []string) PolicyDocument {
			src, dst, srcKey, dstKey := v[0], v[1], v[2], v[3]
			return NewPolicy(
				Allow("ReadReplicationConfiguration", []string{"s3:GetReplicationConfiguration", "s3:ListBucket"}, src),
				Allow("ReadSourceVersions", []string{"s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl",
					"s3:GetObjectVersionTagging"}, src+"/*"),
				Allow("WriteReplica", []string{"s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"}, dst+"/*"),
				Allow("DecryptSource", []string{"kms:Decrypt"}, srcKey),
				Allow("EncryptReplica", []string{"kms:Encrypt", "kms:GenerateDataKey"}, dstKey),
			)
		}, primary.bucket.Arn, replica.bucket.Arn, args.KeyArn, c.ReplicaKey.Key.Arn),
	})
	if err != nil {
		return nil, err
	}
	// Replication needs versioning enabled on both buckets first.
	if _, err := s3.NewBucketReplicationConfig(ctx, name+"-replication", &s3.BucketReplicationConfigArgs{
		Bucket: primary.bucket.ID(),
		Role:   role.Arn,
		Rules: s3.BucketReplicationConfigRuleArray{s3.BucketReplicationConfigRuleArgs{
			Id:                      pulumi.String("replicate-all"),
			Status:                  pulumi.String("Enabled"),
			Filter:                  s3.BucketReplicationConfigRuleFilterArgs{Prefix: pulumi.String("")},
			DeleteMarkerReplication: s3.BucketReplicationConfigRuleDeleteMarkerReplicationArgs{Status: pulumi.String("Enabled")},
			SourceSelectionCriteria: s3.BucketReplicationConfigRuleSourceSelectionCriteriaArgs{
				SseKmsEncryptedObjects: s3.BucketReplicationConfigRuleSourceSelectionCriteriaSseKmsEncryptedObjectsArgs{
					Status: pulumi.String("Enabled"),
				},
			},
			Destination: s3.BucketReplicationConfigRuleDestinationArgs{
				Bucket:       replica.bucket.Arn,
				StorageClass: pulumi.String("STANDARD"),
				EncryptionConfiguration: s3.BucketReplicationConfigRuleDestinationEncryptionConfigurationArgs{
					ReplicaKmsKeyId: c.ReplicaKey.Key.Arn,
				},
			},
		}},
	}, child(c, pulumi.DependsOn([]pulumi.Resource{primary.versioning, replica.versioning}))...); err != nil {
		return nil, err
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"bucket": c.Bucket.Bucket, "replicaBucket": c.Replica.Bucket,
	})
}

type secureBucket struct {
	bucket     *s3.BucketV2
	versioning *s3.BucketVersioningV2
}

// newSecureBucket creates a protected, versioned bucket encrypted with keyArn (SSE-KMS with a
// bucket key), with public access blocked, a TLS-only policy and the lifecycle of args.
func newSecureBucket(ctx *pulumi.Context, name string, parent pulumi.Resource, acct Account, args BackupArgs,
	keyArn pulumi.StringInput, extra ...pulumi.ResourceOption) (*secureBucket, error) {
	opts := child(parent, extra...)
	bucket, err := s3.NewBucketV2(ctx, name+"-bucket", &s3.BucketV2Args{
		Bucket: pulumi.String(fmt.Sprintf("%s-backups-%s-%s", args.Prefix, acct.ID, acct.Region)),
	}, append(opts, pulumi.Protect(true))...)
	if err != nil {
		return nil, err
	}
	pab, err := s3.NewBucketPublicAccessBlock(ctx, name+"-public-access", &s3.BucketPublicAccessBlockArgs{
		Bucket: bucket.ID(), BlockPublicAcls: pulumi.Bool(true), BlockPublicPolicy: pulumi.Bool(true),
		IgnorePublicAcls: pulumi.Bool(true), RestrictPublicBuckets: pulumi.Bool(true),
	}, opts...)
	if err != nil {
		return nil, err
	}
	versioning, err := s3.NewBucketVersioningV2(ctx, name+"-versioning", &s3.BucketVersioningV2Args{
		Bucket:                  bucket.ID(),
		VersioningConfiguration: s3.BucketVersioningV2VersioningConfigurationArgs{Status: pulumi.String("Enabled")},
	}, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := s3.NewBucketServerSideEncryptionConfigurationV2(ctx, name+"-encryption", &s3.BucketServerSideEncryptionConfigurationV2Args{
		Bucket: bucket.ID(),
		Rules: s3.BucketServerSideEncryptionConfigurationV2RuleArray{s3.BucketServerSideEncryptionConfigurationV2RuleArgs{
			ApplyServerSideEncryptionByDefault: s3.BucketServerSideEncryptionConfigurationV2RuleApplyServerSideEncryptionByDefaultArgs{
				SseAlgorithm: pulumi.String("aws:kms"), KmsMasterKeyId: keyArn,
			},
			BucketKeyEnabled: pulumi.Bool(true),
		}},
	}, opts...); err != nil {
		return nil, err
	}
	if _, err := s3.NewBucketPolicy(ctx, name+"-tls-only", &s3.BucketPolicyArgs{
		Bucket: bucket.ID(),
		Policy: policyJSON(func(v []string) PolicyDocument {
			return NewPolicy(PolicyStatement{
				Sid: "DenyInsecureTransport", Effect: "Deny", Principal: map[string]any{"AWS": "*"},
				Action: []string{"s3:*"}, Resource: []string{v[0], v[0] + "/*"},
				Condition: map[string]map[string]any{"Bool": {"aws:SecureTransport": "false"}},
			})
		}, bucket.Arn),
	}, append(opts, pulumi.DependsOn([]pulumi.Resource{pab}))...); err != nil {
		return nil, err
	}
	if _, err := s3.NewBucketLifecycleConfigurationV2(ctx, name+"-lifecycle", &s3.BucketLifecycleConfigurationV2Args{
		Bucket: bucket.ID(),
		Rules: s3.BucketLifecycleConfigurationV2RuleArray{s3.BucketLifecycleConfigurationV2RuleArgs{
			Id:     pulumi.String("archive-then-expire"),
			Status: pulumi.String("Enabled"),
			Filter: s3.BucketLifecycleConfigurationV2RuleFilterArgs{Prefix: pulumi.String("")},
			Transitions: s3.BucketLifecycleConfigurationV2RuleTransitionArray{s3.BucketLifecycleConfigurationV2RuleTransitionArgs{
				Days: pulumi.Int(args.TransitionDays), StorageClass: pulumi.String("GLACIER_IR"),
			}},
			Expiration: s3.BucketLifecycleConfigurationV2RuleExpirationArgs{Days: pulumi.Int(args.ExpirationDays)},
			NoncurrentVersionExpiration: s3.BucketLifecycleConfigurationV2RuleNoncurrentVersionExpirationArgs{
				NoncurrentDays: pulumi.Int(args.ExpirationDays),
			},
			AbortIncompleteMultipartUpload: s3.BucketLifecycleConfigurationV2RuleAbortIncompleteMultipartUploadArgs{
				DaysAfterInitiation: pulumi.Int(7),
			},
		}},
	}, append(opts, pulumi.DependsOn([]pulumi.Resource{versioning}))...); err != nil {
		return nil, err
	}
	return &secureBucket{bucket: bucket, versioning: versioning}, nil
}
