package stacks

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// MockAccountID is the account the mocks pretend to deploy into.
const MockAccountID = "123456789012"

// MockZones are the CloudHSM-capable AZs the mocks report per region: like us-east-1, where
// "a" has been missing, they are not simply a, b, c.
var MockZones = map[string][]string{
	"us-east-1": {"us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"},
	"us-west-2": {"us-west-2a", "us-west-2b", "us-west-2c"},
}

// Resource is one resource registered by the program, as the engine received it.
type Resource struct {
	Type          string
	Name          string
	URN           string
	Parent        string
	Provider      string
	Custom        bool
	ID            string
	Inputs        map[string]any
	Outputs       map[string]any
	Protect       bool
	IgnoreChanges []string
	Dependencies  []string
}

// PlanResult is an offline run of the program for one stack: every resource and the outputs.
type PlanResult struct {
	Stack     string
	Config    Config
	Resources []Resource
	Outputs   map[string]any
}

// Plan loads the stack's files from dir and runs the program offline.
func Plan(dir, stack string) (*PlanResult, error) {
	files, err := LoadStackFiles(dir, stack)
	if err != nil {
		return nil, err
	}
	cfg, err := files.Config()
	if err != nil {
		return nil, err
	}
	return PlanConfig(stack, cfg)
}

// PlanConfig runs the program for stack under Pulumi's mocks with the given config (the
// PULUMI_CONFIG map) and records every resource. The config goes straight into the run's
// RunInfo, the field PULUMI_CONFIG fills, so that concurrent plans do not share the environment.
func PlanConfig(stack string, config map[string]string) (*PlanResult, error) {
	m := newMocks(stack)
	res := &PlanResult{Stack: stack}
	var (
		mu      sync.Mutex
		outputs map[string]any
	)
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		cfg, err := ParseConfig(ctx.GetConfig)
		if err != nil {
			return err
		}
		res.Config = cfg
		out, err := run(ctx)
		if err != nil {
			return err
		}
		out.ToMapOutput().ApplyT(func(v map[string]any) map[string]any {
			mu.Lock()
			defer mu.Unlock()
			outputs = v
			return v
		})
		return nil
	}, pulumi.WithMocks(Project, stack, m), func(info *pulumi.RunInfo) { info.Config = config })
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	// Round-trip through JSON so outputs read like the engine's (strings, lists, maps).
	b, err := json.Marshal(outputs)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &res.Outputs); err != nil {
		return nil, err
	}
	res.Resources = m.recorded()
	return res, nil
}

// mocks answers the program's resource registrations and invokes like AWS would, and records
// each registration with the options the engine received (protect, ignoreChanges, dependencies).
type mocks struct {
	stack string

	mu        sync.Mutex
	resources []Resource
	providers map[string]string // provider reference "urn::id" -> region
	subnets   map[string]resource.PropertyMap
}

func newMocks(stack string) *mocks {
	return &mocks{stack: stack, providers: map[string]string{}, subnets: map[string]resource.PropertyMap{}}
}

func (m *mocks) recorded() []Resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.resources)
	slices.SortFunc(out, func(a, b Resource) int { return strings.Compare(a.URN, b.URN) })
	return out
}

// fakeID derives a stable AWS-looking id from the resource's type and name.
func fakeID(prefix, typ, name string) string {
	sum := sha256.Sum256([]byte(typ + "/" + name))
	return prefix + hex.EncodeToString(sum[:])[:17]
}

// urn computes the URN the mock monitor gives a resource.
func (m *mocks) urn(parent, typ, name string) string {
	parentType := tokens.Type("")
	if p := resource.URN(parent); p != "" && p.QualifiedType() != resource.RootStackType {
		parentType = p.QualifiedType()
	}
	return string(resource.NewURN(tokens.QName(m.stack), tokens.PackageName(Project), parentType, tokens.Type(typ), name))
}

func str(pm resource.PropertyMap, key string) string {
	if v, ok := pm[resource.PropertyKey(key)]; ok && v.IsString() {
		return v.StringValue()
	}
	return ""
}

// NewResource implements pulumi.MockResourceMonitor.
func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	region := m.providers[args.Provider]
	arn := func(service, res string) string {
		return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, region, MockAccountID, res)
	}
	out := args.Inputs.Copy()
	set := func(k string, v any) { out[resource.PropertyKey(k)] = resource.NewPropertyValue(v) }
	in := func(k string) string { return str(args.Inputs, k) }
	typ, name := args.TypeToken, args.Name
	id := fakeID("", typ, name)
	short := typ[strings.LastIndex(typ, ":")+1:]
	switch typ {
	case "pulumi:providers:aws":
		id = fakeID("provider-", typ, name)
		region = in("region")
		m.providers[m.urn(args.RegisterRPC.GetParent(), typ, name)+"::"+id] = region
	case "pulumi:pulumi:StackReference":
		id = in("name")
		set("outputs", map[string]any{
			"clusterId": "cluster-primary0001", "region": "us-east-1",
			"hsmIps": []any{"10.0.240.10", "10.0.240.138", "10.0.241.10"},
		})
		set("secretOutputNames", []any{})
	case "aws:ec2/vpc:Vpc", "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/internetGateway:InternetGateway",
		"aws:ec2/routeTable:RouteTable", "aws:ec2/natGateway:NatGateway", "aws:ec2/networkAcl:NetworkAcl",
		"aws:ec2/flowLog:FlowLog", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
		"aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule":
		prefixes := map[string]string{"Vpc": "vpc-", "SecurityGroup": "sg-", "InternetGateway": "igw-",
			"RouteTable": "rtb-", "NatGateway": "nat-", "NetworkAcl": "acl-", "FlowLog": "fl-",
			"SecurityGroupIngressRule": "sgr-", "SecurityGroupEgressRule": "sgr-"}
		id = fakeID(prefixes[short], typ, name)
		set("arn", arn("ec2", strings.ToLower(short)+"/"+id))
	case "aws:ec2/subnet:Subnet":
		id = fakeID("subnet-", typ, name)
		set("arn", arn("ec2", "subnet/"+id))
		m.subnets[id] = out
	case "aws:ec2/eip:Eip":
		id = fakeID("eipalloc-", typ, name)
		set("allocationId", id)
		set("publicIp", fmt.Sprintf("198.51.100.%d", 1+len(m.resources)%250))
	case "aws:cloudhsmv2/cluster:Cluster":
		id = fakeID("cluster-", typ, name)[:19]
		set("clusterId", id)
		set("securityGroupId", fakeID("sg-", typ, name+"/sg"))
		state := "UNINITIALIZED"
		if in("sourceBackupIdentifier") != "" {
			state = "ACTIVE" // a restored cluster is already initialized
		}
		set("clusterState", state)
		if subnets := args.Inputs["subnetIds"]; subnets.IsArray() && len(subnets.ArrayValue()) > 0 {
			set("vpcId", str(m.subnets[subnets.ArrayValue()[0].StringValue()], "vpcId"))
		}
	case "aws:cloudhsmv2/hsm:Hsm":
		id = fakeID("hsm-", typ, name)[:15]
		subnet := m.subnets[in("subnetId")]
		set("hsmId", id)
		set("hsmState", "ACTIVE")
		set("hsmEniId", fakeID("eni-", typ, name))
		set("availabilityZone", str(subnet, "availabilityZone"))
	case "aws:kms/key:Key":
		id = fakeID("", typ, name)
		set("keyId", id)
		set("arn", arn("kms", "key/"+id))
	case "aws:kms/alias:Alias":
		id = in("name")
		set("arn", arn("kms", id))
	case "aws:cloudwatch/logGroup:LogGroup":
		id = in("name")
		set("arn", arn("logs", "log-group:"+id))
	case "aws:iam/role:Role":
		id = name + "-" + fakeID("", typ, name)[:7]
		set("name", id)
		set("arn", fmt.Sprintf("arn:aws:iam::%s:role/%s", MockAccountID, id))
	case "aws:iam/instanceProfile:InstanceProfile":
		id = name + "-" + fakeID("", typ, name)[:7]
		set("name", id)
		set("arn", fmt.Sprintf("arn:aws:iam::%s:instance-profile/%s", MockAccountID, id))
	case "aws:s3/bucketV2:BucketV2":
		id = in("bucket")
		set("arn", "arn:aws:s3:::"+id)
	case "aws:sns/topic:Topic":
		id = arn("sns", name)
		set("arn", id)
	case "aws:sns/topicSubscription:TopicSubscription":
		id = in("topic") + ":" + fakeID("", typ, name)
		set("arn", id)
	case "aws:cloudwatch/metricAlarm:MetricAlarm":
		set("arn", arn("cloudwatch", "alarm:"+in("name")))
	case "aws:cloudwatch/dashboard:Dashboard":
		set("dashboardArn", fmt.Sprintf("arn:aws:cloudwatch::%s:dashboard/%s", MockAccountID, in("dashboardName")))
	}
	if !args.Custom && !strings.HasPrefix(typ, "pulumi:") {
		id = "" // component resources have no id
	}
	rpc := args.RegisterRPC
	r := Resource{
		Type: typ, Name: name, Provider: args.Provider, Custom: args.Custom, ID: id,
		Inputs: args.Inputs.Mappable(), Outputs: out.Mappable(),
	}
	if rpc != nil {
		r.URN = m.urn(rpc.GetParent(), typ, name)
		r.Parent = rpc.GetParent()
		r.Protect = rpc.GetProtect()
		r.IgnoreChanges = rpc.GetIgnoreChanges()
		r.Dependencies = rpc.GetDependencies()
	} else {
		r.URN = m.urn("", typ, name)
	}
	m.resources = append(m.resources, r)
	return id, out, nil
}

// Call implements pulumi.MockResourceMonitor for the invokes the program makes.
func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.mu.Lock()
	region := m.providers[args.Provider]
	m.mu.Unlock()
	switch args.Token {
	case "aws:index/getCallerIdentity:getCallerIdentity":
		return resource.NewPropertyMapFromMap(map[string]any{
			"accountId": MockAccountID, "id": MockAccountID, "userId": "AIDAMOCKUSER",
			"arn": fmt.Sprintf("arn:aws:iam::%s:user/ci", MockAccountID),
		}), nil
	case "aws:index/getPartition:getPartition":
		return resource.NewPropertyMapFromMap(map[string]any{
			"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws", "reverseDnsPrefix": "com.amazonaws",
		}), nil
	case "aws:ec2/getVpcEndpointService:getVpcEndpointService":
		zones, ok := MockZones[region]
		if !ok || str(args.Args, "serviceName") != CloudHSMServiceName(region) {
			return nil, fmt.Errorf("mock: no endpoint service %q in region %q", str(args.Args, "serviceName"), region)
		}
		azs := make([]any, len(zones))
		for i, z := range zones {
			azs[i] = z
		}
		return resource.NewPropertyMapFromMap(map[string]any{
			"serviceName": CloudHSMServiceName(region), "availabilityZones": azs, "serviceType": "Interface",
			"owner": "amazon", "region": region, "id": CloudHSMServiceName(region),
		}), nil
	}
	return nil, fmt.Errorf("mock: unexpected invoke %s", args.Token)
}
