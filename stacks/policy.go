package stacks

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/personapass/hsm/infra"
)

// Resource type tokens the policies look at.
const (
	TypeCluster        = "aws:cloudhsmv2/cluster:Cluster"
	TypeHSM            = "aws:cloudhsmv2/hsm:Hsm"
	TypeKMSKey         = "aws:kms/key:Key"
	TypeLogGroup       = "aws:cloudwatch/logGroup:LogGroup"
	TypeTopic          = "aws:sns/topic:Topic"
	TypeBucket         = "aws:s3/bucketV2:BucketV2"
	TypeBucketSSE      = "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
	TypeBucketPAB      = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
	TypeIngressRule    = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
	TypeSecurityGroup  = "aws:ec2/securityGroup:SecurityGroup"
	TypeSGRule         = "aws:ec2/securityGroupRule:SecurityGroupRule"
	TypeMetricAlarm    = "aws:cloudwatch/metricAlarm:MetricAlarm"
	TypeProvider       = "pulumi:providers:aws"
	TypeStackReference = "pulumi:pulumi:StackReference"
)

// StatefulTypes hold keys, logs or backups: every resource of these types must be protected.
var StatefulTypes = []string{TypeCluster, TypeHSM, TypeKMSKey, TypeLogGroup, TypeBucket}

// PolicyDocumentInputs names the inputs that hold IAM-style policy documents, per type.
var PolicyDocumentInputs = map[string][]string{
	"aws:iam/role:Role":                {"assumeRolePolicy"},
	"aws:iam/rolePolicy:RolePolicy":    {"policy"},
	TypeKMSKey:                         {"policy"},
	"aws:s3/bucketPolicy:BucketPolicy": {"policy"},
}

// Rule checks one resource in the context of the whole plan and returns its violations.
type Rule struct {
	Name  string
	Check func(r Resource, p *PlanResult) []string
}

// Rules are the policies every resource of every stack must pass.
var Rules = []Rule{
	{"no-open-ingress", checkNoOpenIngress},
	{"hsm-ports-from-app-only", checkHSMPorts},
	{"kms-rotation", checkKMSKey},
	{"customer-key-encryption", checkEncryption},
	{"public-access-blocked", checkPublicAccess},
	{"no-star-on-star", checkNoStarOnStar},
	{"stateful-protected", checkProtected},
	{"alarm-has-action", checkAlarm},
}

// Violations runs every rule over every resource of p.
func Violations(p *PlanResult) []string {
	var out []string
	for _, r := range p.Resources {
		for _, rule := range Rules {
			for _, v := range rule.Check(r, p) {
				out = append(out, fmt.Sprintf("%s: %s %s: %s", rule.Name, r.Type, r.Name, v))
			}
		}
	}
	return out
}

// Find returns the resources of type typ.
func (p *PlanResult) Find(typ string) []Resource {
	var out []Resource
	for _, r := range p.Resources {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// ByURN returns the resource with the given URN.
func (p *PlanResult) ByURN(urn string) (Resource, bool) {
	for _, r := range p.Resources {
		if r.URN == urn {
			return r, true
		}
	}
	return Resource{}, false
}

func s(m map[string]any, key string) string {
	v, _ := m[key].(string)
	return v
}

func num(m map[string]any, key string) float64 {
	v, _ := m[key].(float64)
	return v
}

func list(m map[string]any, key string) []any {
	v, _ := m[key].([]any)
	return v
}

var openCIDRs = []string{"0.0.0.0/0", "::/0"}

func checkNoOpenIngress(r Resource, _ *PlanResult) []string {
	var cidrs []string
	switch r.Type {
	case TypeIngressRule:
		cidrs = append(cidrs, s(r.Inputs, "cidrIpv4"), s(r.Inputs, "cidrIpv6"))
	case TypeSGRule:
		if s(r.Inputs, "type") == "ingress" {
			for _, c := range append(list(r.Inputs, "cidrBlocks"), list(r.Inputs, "ipv6CidrBlocks")...) {
				cidrs = append(cidrs, fmt.Sprint(c))
			}
		}
	case TypeSecurityGroup:
		for _, rule := range list(r.Inputs, "ingress") {
			m, _ := rule.(map[string]any)
			for _, c := range append(list(m, "cidrBlocks"), list(m, "ipv6CidrBlocks")...) {
				cidrs = append(cidrs, fmt.Sprint(c))
			}
		}
	}
	var out []string
	for _, c := range cidrs {
		if slices.Contains(openCIDRs, c) {
			out = append(out, "ingress from "+c)
		}
	}
	return out
}

// checkHSMPorts: an ingress rule that opens any of the HSM ports must come from the application
// security group, and the cluster's security group must admit it.
func checkHSMPorts(r Resource, p *PlanResult) []string {
	appSG := s(p.Outputs, "appSecurityGroupId")
	switch r.Type {
	case TypeIngressRule:
		from, to := int(num(r.Inputs, "fromPort")), int(num(r.Inputs, "toPort"))
		proto := s(r.Inputs, "ipProtocol")
		if (proto == "-1" || (from <= infra.HSMPortLast && to >= infra.HSMPortFirst)) &&
			s(r.Inputs, "referencedSecurityGroupId") != appSG {
			return []string{fmt.Sprintf("HSM ports %d-%d open to something other than the application security group %s",
				infra.HSMPortFirst, infra.HSMPortLast, appSG)}
		}
	case TypeCluster:
		sg := s(r.Outputs, "securityGroupId")
		for _, rule := range p.Find(TypeIngressRule) {
			if s(rule.Inputs, "securityGroupId") == sg && s(rule.Inputs, "referencedSecurityGroupId") == appSG &&
				int(num(rule.Inputs, "fromPort")) == infra.HSMPortFirst && int(num(rule.Inputs, "toPort")) == infra.HSMPortLast {
				return nil
			}
		}
		return []string{"the cluster's security group admits no application traffic on the HSM ports"}
	}
	return nil
}

func checkKMSKey(r Resource, _ *PlanResult) []string {
	if r.Type != TypeKMSKey {
		return nil
	}
	var out []string
	if r.Inputs["enableKeyRotation"] != true {
		out = append(out, "rotation disabled")
	}
	if int(num(r.Inputs, "rotationPeriodInDays")) != infra.KeyRotationDays {
		out = append(out, fmt.Sprintf("rotation period %v, want %d days", r.Inputs["rotationPeriodInDays"], infra.KeyRotationDays))
	}
	if int(num(r.Inputs, "deletionWindowInDays")) != infra.KeyDeletionWindowDays {
		out = append(out, fmt.Sprintf("deletion window %v, want %d days", r.Inputs["deletionWindowInDays"], infra.KeyDeletionWindowDays))
	}
	doc, err := parsePolicy(s(r.Inputs, "policy"))
	if err != nil {
		return append(out, err.Error())
	}
	for _, st := range doc.Statement {
		if st.Effect == "Allow" && hasWildcardPrincipal(st.Principal) {
			out = append(out, fmt.Sprintf("statement %q admits a wildcard principal", st.Sid))
		}
	}
	return out
}

func hasWildcardPrincipal(p any) bool {
	switch v := p.(type) {
	case string:
		return v == "*"
	case map[string]any:
		for _, x := range v {
			if hasWildcardPrincipal(x) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(v, hasWildcardPrincipal)
	}
	return false
}

// customerKeyArns returns the ARNs of the stack's customer-managed keys.
func (p *PlanResult) customerKeyArns() []string {
	var out []string
	for _, k := range p.Find(TypeKMSKey) {
		out = append(out, s(k.Outputs, "arn"))
	}
	return out
}

func checkEncryption(r Resource, p *PlanResult) []string {
	keys := p.customerKeyArns()
	var key string
	switch r.Type {
	case TypeLogGroup:
		key = s(r.Inputs, "kmsKeyId")
	case TypeTopic:
		key = s(r.Inputs, "kmsMasterKeyId")
	case TypeBucket:
		for _, sse := range p.Find(TypeBucketSSE) {
			if s(sse.Inputs, "bucket") != r.ID {
				continue
			}
			for _, rule := range list(sse.Inputs, "rules") {
				m, _ := rule.(map[string]any)
				def, _ := m["applyServerSideEncryptionByDefault"].(map[string]any)
				if s(def, "sseAlgorithm") == "aws:kms" && m["bucketKeyEnabled"] == true {
					key = s(def, "kmsMasterKeyId")
				}
			}
		}
	default:
		return nil
	}
	if !slices.Contains(keys, key) {
		return []string{fmt.Sprintf("not encrypted with one of the stack's customer keys (key %q)", key)}
	}
	return nil
}

func checkPublicAccess(r Resource, p *PlanResult) []string {
	if r.Type != TypeBucket {
		return nil
	}
	for _, pab := range p.Find(TypeBucketPAB) {
		if s(pab.Inputs, "bucket") == r.ID && pab.Inputs["blockPublicAcls"] == true && pab.Inputs["blockPublicPolicy"] == true &&
			pab.Inputs["ignorePublicAcls"] == true && pab.Inputs["restrictPublicBuckets"] == true {
			return nil
		}
	}
	return []string{"public access not fully blocked"}
}

// policyDoc is a policy document whose Action, Resource and Principal may be strings or lists.
type policyDoc struct {
	Statement []struct {
		Sid       string
		Effect    string
		Principal any
		Action    any
		Resource  any
	}
}

func parsePolicy(text string) (policyDoc, error) {
	var doc policyDoc
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		return doc, fmt.Errorf("policy is not JSON: %v", err)
	}
	return doc, nil
}

func strs(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

func checkNoStarOnStar(r Resource, _ *PlanResult) []string {
	var out []string
	for _, input := range PolicyDocumentInputs[r.Type] {
		doc, err := parsePolicy(s(r.Inputs, input))
		if err != nil {
			out = append(out, input+": "+err.Error())
			continue
		}
		for _, st := range doc.Statement {
			if st.Effect == "Allow" && slices.Contains(strs(st.Action), "*") &&
				(st.Resource == nil || slices.Contains(strs(st.Resource), "*")) {
				out = append(out, fmt.Sprintf("%s: statement %q allows * on *", input, st.Sid))
			}
		}
	}
	return out
}

func checkProtected(r Resource, _ *PlanResult) []string {
	if !slices.Contains(StatefulTypes, r.Type) {
		return nil
	}
	var out []string
	if !r.Protect {
		out = append(out, "stateful resource not protected")
	}
	want := map[string][]string{TypeCluster: infra.ClusterIgnoreChanges, TypeHSM: infra.HSMIgnoreChanges}[r.Type]
	for _, k := range want {
		if !slices.Contains(r.IgnoreChanges, k) {
			out = append(out, fmt.Sprintf("changes to %s would replace it and are not ignored", k))
		}
	}
	return out
}

func checkAlarm(r Resource, _ *PlanResult) []string {
	if r.Type != TypeMetricAlarm {
		return nil
	}
	var out []string
	if len(list(r.Inputs, "alarmActions")) == 0 || r.Inputs["actionsEnabled"] == false {
		out = append(out, "alarm has no enabled action")
	}
	if d := num(r.Inputs, "period") * num(r.Inputs, "evaluationPeriods"); d > infra.MaxDetectionSeconds || d == 0 {
		out = append(out, fmt.Sprintf("detects in %vs, more than %ds", d, infra.MaxDetectionSeconds))
	}
	return out
}

// IsComponent reports whether r is one of the program's component resources.
func (r Resource) IsComponent() bool { return strings.HasPrefix(r.Type, infra.TypePrefix) }
