package stacks

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Each rule must catch a resource that breaks it; a rule that cannot fail proves nothing.
func TestRulesCatchBadResources(t *testing.T) {
	keyArn := "arn:aws:kms:us-east-1:123456789012:key/good"
	plan := &PlanResult{
		Outputs: map[string]any{"appSecurityGroupId": "sg-app"},
		Resources: []Resource{
			{Type: TypeKMSKey, Name: "good-key", Protect: true, Outputs: map[string]any{"arn": keyArn}, Inputs: map[string]any{
				"enableKeyRotation": true, "rotationPeriodInDays": 90.0, "deletionWindowInDays": 30.0,
				"policy": `{"Statement":[{"Effect":"Allow","Principal":{"Service":"logs.amazonaws.com"},"Action":"kms:Decrypt","Resource":"*"}]}`}},
			{Type: TypeIngressRule, Name: "cluster-ingress", Inputs: map[string]any{
				"securityGroupId": "sg-cluster", "referencedSecurityGroupId": "sg-app", "ipProtocol": "tcp",
				"fromPort": 2223.0, "toPort": 2225.0}},
			{Type: TypeBucketSSE, Inputs: map[string]any{"bucket": "weak-bucket", "rules": []any{map[string]any{
				"applyServerSideEncryptionByDefault": map[string]any{"sseAlgorithm": "AES256"}}}}},
			{Type: TypeBucketPAB, Inputs: map[string]any{"bucket": "open-bucket", "blockPublicAcls": true,
				"blockPublicPolicy": false, "ignorePublicAcls": true, "restrictPublicBuckets": true}},
		},
	}
	cases := []struct {
		rule string
		bad  Resource
		want string
	}{
		{"no-open-ingress", Resource{Type: TypeIngressRule, Inputs: map[string]any{"cidrIpv4": "0.0.0.0/0", "fromPort": 443.0, "toPort": 443.0}}, "ingress from 0.0.0.0/0"},
		{"no-open-ingress", Resource{Type: TypeIngressRule, Inputs: map[string]any{"cidrIpv6": "::/0"}}, "ingress from ::/0"},
		{"no-open-ingress", Resource{Type: TypeSecurityGroup, Inputs: map[string]any{"ingress": []any{
			map[string]any{"cidrBlocks": []any{"0.0.0.0/0"}}}}}, "ingress from 0.0.0.0/0"},
		{"hsm-ports-from-app-only", Resource{Type: TypeIngressRule, Inputs: map[string]any{"cidrIpv4": "10.0.0.0/8",
			"ipProtocol": "tcp", "fromPort": 2000.0, "toPort": 2300.0}}, "open to something other than the application security group"},
		{"hsm-ports-from-app-only", Resource{Type: TypeIngressRule, Inputs: map[string]any{"ipProtocol": "-1",
			"referencedSecurityGroupId": "sg-other"}}, "open to something other"},
		{"hsm-ports-from-app-only", Resource{Type: TypeCluster, Outputs: map[string]any{"securityGroupId": "sg-elsewhere"}}, "admits no application traffic"},
		{"kms-rotation", Resource{Type: TypeKMSKey, Inputs: map[string]any{"enableKeyRotation": false,
			"rotationPeriodInDays": 365.0, "deletionWindowInDays": 30.0, "policy": `{"Statement":[]}`}}, "rotation disabled"},
		{"kms-rotation", Resource{Type: TypeKMSKey, Inputs: map[string]any{"enableKeyRotation": true,
			"rotationPeriodInDays": 365.0, "deletionWindowInDays": 7.0, "policy": `{"Statement":[]}`}}, "rotation period 365"},
		{"kms-rotation", Resource{Type: TypeKMSKey, Inputs: map[string]any{"enableKeyRotation": true,
			"rotationPeriodInDays": 90.0, "deletionWindowInDays": 30.0,
			"policy": `{"Statement":[{"Sid":"Open","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*"}]}`}}, "wildcard principal"},
		{"customer-key-encryption", Resource{Type: TypeLogGroup, Inputs: map[string]any{"name": "/x"}}, "not encrypted"},
		{"customer-key-encryption", Resource{Type: TypeTopic, Inputs: map[string]any{"kmsMasterKeyId": "alias/aws/sns"}}, "not encrypted"},
		{"customer-key-encryption", Resource{Type: TypeBucket, ID: "weak-bucket"}, "not encrypted"},
		{"public-access-blocked", Resource{Type: TypeBucket, ID: "open-bucket"}, "public access not fully blocked"},
		{"no-star-on-star", Resource{Type: "aws:iam/rolePolicy:RolePolicy", Inputs: map[string]any{
			"policy": `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`}}, "allows * on *"},
		{"no-star-on-star", Resource{Type: "aws:iam/role:Role", Inputs: map[string]any{
			"assumeRolePolicy": `{"Statement":[{"Sid":"x","Effect":"Allow","Action":["s3:GetObject","*"],"Resource":["*"]}]}`}}, "allows * on *"},
		{"stateful-protected", Resource{Type: TypeBucket}, "not protected"},
		{"stateful-protected", Resource{Type: TypeCluster, Protect: true, IgnoreChanges: []string{"hsmType"}}, "changes to subnetIds would replace it"},
		{"stateful-protected", Resource{Type: TypeHSM, Protect: true}, "changes to subnetId would replace it"},
		{"alarm-has-action", Resource{Type: TypeMetricAlarm, Inputs: map[string]any{"period": 60.0, "evaluationPeriods": 1.0}}, "no enabled action"},
		{"alarm-has-action", Resource{Type: TypeMetricAlarm, Inputs: map[string]any{"alarmActions": []any{"arn:sns"},
			"period": 300.0, "evaluationPeriods": 3.0}}, "more than 300s"},
	}
	rules := map[string]Rule{}
	for _, r := range Rules {
		rules[r.Name] = r
	}
	for _, tc := range cases {
		t.Run(tc.rule+"/"+tc.want, func(t *testing.T) {
			rule, ok := rules[tc.rule]
			if assert.True(t, ok, "no rule %s", tc.rule) {
				assert.Contains(t, joined(rule.Check(tc.bad, plan)), tc.want)
			}
		})
	}
	// The good fixtures pass, so the failures above come from the bad resources.
	for _, r := range plan.Resources {
		for _, rule := range Rules {
			assert.Empty(t, rule.Check(r, plan), "%s on %s", rule.Name, r.Name)
		}
	}
}

func joined(v []string) string {
	out := ""
	for _, s := range v {
		out += s + "\n"
	}
	return out
}
