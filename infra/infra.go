// Package infra holds the Pulumi component resources of the PersonaPass HSM platform: the network,
// the CloudHSM cluster, the KMS keys, the backup buckets, the IAM roles and the monitoring. Each
// component registers its children with itself as parent, so a stack's resource tree reads
// component by component.
package infra

import (
	"encoding/json"
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// TypePrefix is the package and module part of every component type token.
const TypePrefix = "personapass:infra:"

// Account identifies where the stack deploys: the AWS account, its partition and region.
type Account struct {
	ID        string
	Partition string
	Region    string
}

// RootARN is the ARN of the account's root principal, used to delegate to IAM policies.
func (a Account) RootARN() string {
	return fmt.Sprintf("arn:%s:iam::%s:root", a.Partition, a.ID)
}

// ARN builds an ARN in this account and region for service and resource.
func (a Account) ARN(service, resource string) string {
	return fmt.Sprintf("arn:%s:%s:%s:%s:%s", a.Partition, service, a.Region, a.ID, resource)
}

// PolicyDocument is an IAM or resource policy document.
type PolicyDocument struct {
	Version   string            `json:"Version"`
	Statement []PolicyStatement `json:"Statement"`
}

// PolicyStatement is one statement of a PolicyDocument.
type PolicyStatement struct {
	Sid       string                    `json:"Sid,omitempty"`
	Effect    string                    `json:"Effect"`
	Principal map[string]any            `json:"Principal,omitempty"`
	Action    []string                  `json:"Action"`
	Resource  []string                  `json:"Resource,omitempty"`
	Condition map[string]map[string]any `json:"Condition,omitempty"`
}

// NewPolicy returns a policy document (version 2012-10-17) holding statements.
func NewPolicy(statements ...PolicyStatement) PolicyDocument {
	return PolicyDocument{Version: "2012-10-17", Statement: statements}
}

// Allow returns an Allow statement for actions on resources.
func Allow(sid string, actions []string, resources ...string) PolicyStatement {
	return PolicyStatement{Sid: sid, Effect: "Allow", Action: actions, Resource: resources}
}

// ServicePrincipal returns a Principal naming one AWS service.
func ServicePrincipal(service string) map[string]any {
	return map[string]any{"Service": service}
}

// policyJSON renders a policy whose content depends on outputs: build receives the resolved
// values of inputs in order.
func policyJSON(build func(values []string) PolicyDocument, inputs ...pulumi.StringInput) pulumi.StringOutput {
	args := make([]any, len(inputs))
	for i, in := range inputs {
		args[i] = in
	}
	return pulumi.All(args...).ApplyT(func(vs []any) (string, error) {
		values := make([]string, len(vs))
		for i, v := range vs {
			values[i] = v.(string)
		}
		b, err := json.Marshal(build(values))
		return string(b), err
	}).(pulumi.StringOutput)
}

// staticPolicy renders a policy whose content is known when the program runs.
func staticPolicy(doc PolicyDocument) pulumi.String {
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err) // strings, bools and numbers only: cannot fail
	}
	return pulumi.String(b)
}

// assumeRolePolicy renders a trust policy that lets principal assume a role under condition.
func assumeRolePolicy(principal map[string]any, condition map[string]map[string]any) pulumi.String {
	return staticPolicy(NewPolicy(PolicyStatement{
		Effect: "Allow", Principal: principal, Action: []string{"sts:AssumeRole"}, Condition: condition,
	}))
}

// sourceAccount is the confused-deputy guard for service principals acting for this account.
func sourceAccount(acct Account) map[string]map[string]any {
	return map[string]map[string]any{"StringEquals": {"aws:SourceAccount": acct.ID}}
}

// child returns the options for a child of component: parented to it, plus extra.
func child(component pulumi.Resource, extra ...pulumi.ResourceOption) []pulumi.ResourceOption {
	return append([]pulumi.ResourceOption{pulumi.Parent(component)}, extra...)
}

// stateful returns the options of a resource that holds keys, logs or backups: protected, so
// that no plan can delete it, and blind to changes of the named inputs that would replace it.
func stateful(component pulumi.Resource, ignoreChanges ...string) []pulumi.ResourceOption {
	opts := child(component, pulumi.Protect(true))
	if len(ignoreChanges) > 0 {
		opts = append(opts, pulumi.IgnoreChanges(ignoreChanges))
	}
	return opts
}

// registerComponent registers a component resource of the given kind (e.g. "Network").
func registerComponent(ctx *pulumi.Context, kind, name string, comp pulumi.ComponentResource, opts ...pulumi.ResourceOption) error {
	return ctx.RegisterComponentResource(TypePrefix+kind, name, comp, opts...)
}
