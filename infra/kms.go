package infra

import (
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/kms"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

const (
	// KeyRotationDays is the automatic rotation period of every customer-managed key.
	KeyRotationDays = 90
	// KeyDeletionWindowDays is the waiting period before a scheduled key deletion completes.
	KeyDeletionWindowDays = 30
)

// KeyUser is a service that may use a key, with the condition that confines it.
type KeyUser struct {
	Service   string
	Actions   []string
	Condition map[string]map[string]any
}

// CustomerKey is a customer-managed KMS key with its alias.
type CustomerKey struct {
	Key   *kms.Key
	Alias *kms.Alias
}

// newCustomerKey creates a symmetric key rotating every KeyRotationDays, whose policy admits the
// account (so IAM policies can grant use) and the services in users, never a wildcard principal.
func newCustomerKey(ctx *pulumi.Context, name, alias, description string, acct Account, users []KeyUser,
	opts ...pulumi.ResourceOption) (*CustomerKey, error) {
	statements := []PolicyStatement{{
		Sid: "AccountAdministersKeyThroughIAM", Effect: "Allow",
		Principal: map[string]any{"AWS": acct.RootARN()},
		Action:    []string{"kms:*"}, Resource: []string{"*"},
	}}
	for _, u := range users {
		statements = append(statements, PolicyStatement{
			Sid: "Service" + sidSafe(u.Service), Effect: "Allow", Principal: ServicePrincipal(u.Service),
			Action: u.Actions, Resource: []string{"*"}, Condition: u.Condition,
		})
	}
	key, err := kms.NewKey(ctx, name, &kms.KeyArgs{
		Description:          pulumi.String(description),
		EnableKeyRotation:    pulumi.Bool(true),
		RotationPeriodInDays: pulumi.Int(KeyRotationDays),
		DeletionWindowInDays: pulumi.Int(KeyDeletionWindowDays),
		Policy:               staticPolicy(NewPolicy(statements...)),
	}, append(opts, pulumi.Protect(true))...)
	if err != nil {
		return nil, err
	}
	a, err := kms.NewAlias(ctx, name+"-alias", &kms.AliasArgs{
		Name: pulumi.String("alias/" + alias), TargetKeyId: key.KeyId,
	}, opts...)
	if err != nil {
		return nil, err
	}
	return &CustomerKey{Key: key, Alias: a}, nil
}

// sidSafe turns a service principal such as "logs.us-east-1.amazonaws.com" into a Sid fragment.
func sidSafe(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			out = append(out, r)
		}
	}
	return string(out)
}

// KeysArgs configures the Keys component.
type KeysArgs struct {
	// Prefix names the aliases, e.g. "personapass-hsm-prod".
	Prefix  string
	Account Account
}

// Keys holds the customer-managed keys of a stack: for logs, for SNS topics and for backups.
type Keys struct {
	pulumi.ResourceState

	Logs    *CustomerKey
	SNS     *CustomerKey
	Backups *CustomerKey
}

// NewKeys creates the Keys component (type personapass:infra:Keys).
func NewKeys(ctx *pulumi.Context, name string, args KeysArgs, opts ...pulumi.ResourceOption) (*Keys, error) {
	c := &Keys{}
	if err := registerComponent(ctx, "Keys", name, c, opts...); err != nil {
		return nil, err
	}
	acct := args.Account
	encryptDecrypt := []string{"kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"}
	logsService := fmt.Sprintf("logs.%s.amazonaws.com", acct.Region)
	specs := []struct {
		target  **CustomerKey
		purpose string
		users   []KeyUser
	}{
		{&c.Logs, "logs", []KeyUser{{
			Service: logsService, Actions: encryptDecrypt,
			Condition: map[string]map[string]any{"ArnLike": {
				"kms:EncryptionContext:aws:logs:arn": acct.ARN("logs", "log-group:*"),
			}},
		}}},
		{&c.SNS, "sns", []KeyUser{
			{Service: "sns.amazonaws.com", Actions: []string{"kms:Decrypt", "kms:GenerateDataKey*"}, Condition: sourceAccount(acct)},
			{Service: "cloudwatch.amazonaws.com", Actions: []string{"kms:Decrypt", "kms:GenerateDataKey*"}, Condition: sourceAccount(acct)},
		}},
		{&c.Backups, "backups", []KeyUser{{
			Service: "s3.amazonaws.com", Actions: []string{"kms:Decrypt", "kms:GenerateDataKey*"}, Condition: sourceAccount(acct),
		}}},
	}
	for _, s := range specs {
		k, err := newCustomerKey(ctx, name+"-"+s.purpose, args.Prefix+"-"+s.purpose,
			fmt.Sprintf("PersonaPass HSM %s encryption (%s)", s.purpose, args.Prefix), acct, s.users, child(c)...)
		if err != nil {
			return nil, err
		}
		*s.target = k
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"logsKeyArn": c.Logs.Key.Arn, "snsKeyArn": c.SNS.Key.Arn, "backupsKeyArn": c.Backups.Key.Arn,
	})
}
