package infra

import (
	"fmt"
	"net/netip"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/vpc"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

const (
	// HSMPortFirst and HSMPortLast bound the TCP ports CloudHSM clients use (2223-2225).
	HSMPortFirst = 2223
	HSMPortLast  = 2225
	// MaxZones is how many AZs the subnet layout holds: the VPC is cut into 16 equal blocks,
	// four each for HSM, application and public subnets (and four spare).
	MaxZones = 4
	// hsmHostOffset is the host number of the pinned HSM address inside its subnet.
	hsmHostOffset = 10
)

// Layout is the address plan of a VPC: one HSM, one application and one public subnet per AZ.
type Layout struct {
	VPC     netip.Prefix
	HSM     []netip.Prefix
	App     []netip.Prefix
	Public  []netip.Prefix
	HSMAddr []netip.Addr
}

// PlanLayout cuts vpcCIDR into the subnets of zones AZs. The VPC must be an IPv4 block between
// /16 and /24 inclusive of the network address, and zones between 1 and MaxZones.
func PlanLayout(vpcCIDR string, zones int) (Layout, error) {
	p, err := netip.ParsePrefix(vpcCIDR)
	if err != nil {
		return Layout{}, fmt.Errorf("not a CIDR block: %v", err)
	}
	if !p.Addr().Is4() {
		return Layout{}, fmt.Errorf("%s is not IPv4", vpcCIDR)
	}
	if p.Masked() != p {
		return Layout{}, fmt.Errorf("%s has host bits set (network address is %s)", vpcCIDR, p.Masked())
	}
	if p.Bits() < 16 || p.Bits() > 24 {
		return Layout{}, fmt.Errorf("%s must be between /16 and /24 (AWS allows /16 to /28 and the layout needs 16 subnets of at least /28)", vpcCIDR)
	}
	if zones < 1 || zones > MaxZones {
		return Layout{}, fmt.Errorf("%d zones: the layout holds 1 to %d", zones, MaxZones)
	}
	l := Layout{VPC: p}
	for i := range zones {
		hsm := subBlock(p, i)
		l.HSM = append(l.HSM, hsm)
		l.App = append(l.App, subBlock(p, MaxZones+i))
		l.Public = append(l.Public, subBlock(p, 2*MaxZones+i))
		l.HSMAddr = append(l.HSMAddr, addrAt(hsm.Addr(), hsmHostOffset))
	}
	return l, nil
}

// subBlock returns the i-th of the 16 equal blocks of p.
func subBlock(p netip.Prefix, i int) netip.Prefix {
	bits := p.Bits() + 4
	size := uint32(1) << (32 - bits)
	return netip.PrefixFrom(addrAt(p.Addr(), uint32(i)*size), bits)
}

func addrAt(base netip.Addr, offset uint32) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += offset
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// NetworkArgs configures the Network component.
type NetworkArgs struct {
	Prefix           string
	Account          Account
	Layout           Layout
	Zones            []string
	LogsKeyArn       pulumi.StringInput
	LogRetentionDays int
}

// Network is the dedicated VPC of a stack: HSM, application and public subnets per AZ, a NAT
// gateway per AZ, a network ACL guarding the HSM subnets, VPC flow logs and the application
// security group.
type Network struct {
	pulumi.ResourceState

	VPC              *ec2.Vpc
	HSMSubnets       []*ec2.Subnet
	AppSubnets       []*ec2.Subnet
	PublicSubnets    []*ec2.Subnet
	NATGateways      []*ec2.NatGateway
	HSMNetworkACL    *ec2.NetworkAcl
	FlowLogGroup     *cloudwatch.LogGroup
	AppSecurityGroup *ec2.SecurityGroup
}

// NewNetwork creates the Network component (type personapass:infra:Network).
func NewNetwork(ctx *pulumi.Context, name string, args NetworkArgs, opts ...pulumi.ResourceOption) (*Network, error) {
	if len(args.Zones) != len(args.Layout.HSM) {
		return nil, fmt.Errorf("network %s: %d zones for a layout of %d", name, len(args.Zones), len(args.Layout.HSM))
	}
	c := &Network{}
	if err := registerComponent(ctx, "Network", name, c, opts...); err != nil {
		return nil, err
	}
	var err error
	c.VPC, err = ec2.NewVpc(ctx, name+"-vpc", &ec2.VpcArgs{
		CidrBlock:          pulumi.String(args.Layout.VPC.String()),
		EnableDnsHostnames: pulumi.Bool(true),
		EnableDnsSupport:   pulumi.Bool(true),
		Tags:               nameTag(args.Prefix + "-vpc"),
	}, child(c)...)
	if err != nil {
		return nil, err
	}
	if err := c.subnetsAndRoutes(ctx, name, args); err != nil {
		return nil, err
	}
	if err := c.hsmACL(ctx, name, args); err != nil {
		return nil, err
	}
	if err := c.flowLogs(ctx, name, args); err != nil {
		return nil, err
	}
	c.AppSecurityGroup, err = ec2.NewSecurityGroup(ctx, name+"-app-sg", &ec2.SecurityGroupArgs{
		VpcId:       c.VPC.ID(),
		Description: pulumi.String("PersonaPass application tier: the only source admitted to the HSM ports"),
		Tags:        nameTag(args.Prefix + "-app"),
	}, child(c)...)
	if err != nil {
		return nil, err
	}
	// The application reaches AWS APIs (CloudWatch, SSM) over HTTPS through the NAT gateways.
	if _, err := vpc.NewSecurityGroupEgressRule(ctx, name+"-app-https-out", &vpc.SecurityGroupEgressRuleArgs{
		SecurityGroupId: c.AppSecurityGroup.ID(),
		Description:     pulumi.String("HTTPS to AWS APIs through NAT"),
		IpProtocol:      pulumi.String("tcp"), FromPort: pulumi.Int(443), ToPort: pulumi.Int(443),
		CidrIpv4: pulumi.String("0.0.0.0/0"),
	}, child(c)...); err != nil {
		return nil, err
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"vpcId": c.VPC.ID(), "appSecurityGroupId": c.AppSecurityGroup.ID(),
	})
}

func (c *Network) subnetsAndRoutes(ctx *pulumi.Context, name string, args NetworkArgs) error {
	igw, err := ec2.NewInternetGateway(ctx, name+"-igw", &ec2.InternetGatewayArgs{
		VpcId: c.VPC.ID(), Tags: nameTag(args.Prefix + "-igw"),
	}, child(c)...)
	if err != nil {
		return err
	}
	publicRT, err := ec2.NewRouteTable(ctx, name+"-public-rt", &ec2.RouteTableArgs{
		VpcId: c.VPC.ID(), Tags: nameTag(args.Prefix + "-public"),
	}, child(c)...)
	if err != nil {
		return err
	}
	if _, err := ec2.NewRoute(ctx, name+"-public-default", &ec2.RouteArgs{
		RouteTableId: publicRT.ID(), DestinationCidrBlock: pulumi.String("0.0.0.0/0"), GatewayId: igw.ID(),
	}, child(c)...); err != nil {
		return err
	}
	for i, az := range args.Zones {
		n := fmt.Sprintf("%s-%d", name, i)
		subnet := func(kind string, cidr netip.Prefix) (*ec2.Subnet, error) {
			return ec2.NewSubnet(ctx, n+"-"+kind, &ec2.SubnetArgs{
				VpcId: c.VPC.ID(), CidrBlock: pulumi.String(cidr.String()), AvailabilityZone: pulumi.String(az),
				MapPublicIpOnLaunch: pulumi.Bool(false),
				Tags:                nameTag(fmt.Sprintf("%s-%s-%s", args.Prefix, kind, az)),
			}, child(c)...)
		}
		pub, err := subnet("public", args.Layout.Public[i])
		if err != nil {
			return err
		}
		hsm, err := subnet("hsm", args.Layout.HSM[i])
		if err != nil {
			return err
		}
		app, err := subnet("app", args.Layout.App[i])
		if err != nil {
			return err
		}
		c.PublicSubnets = append(c.PublicSubnets, pub)
		c.HSMSubnets = append(c.HSMSubnets, hsm)
		c.AppSubnets = append(c.AppSubnets, app)
		if err := associate(ctx, n+"-public-rta", publicRT, pub, c); err != nil {
			return err
		}
		eip, err := ec2.NewEip(ctx, n+"-nat-eip", &ec2.EipArgs{
			Domain: pulumi.String("vpc"), Tags: nameTag(fmt.Sprintf("%s-nat-%s", args.Prefix, az)),
		}, child(c)...)
		if err != nil {
			return err
		}
		nat, err := ec2.NewNatGateway(ctx, n+"-nat", &ec2.NatGatewayArgs{
			AllocationId: eip.AllocationId, SubnetId: pub.ID(),
			Tags: nameTag(fmt.Sprintf("%s-nat-%s", args.Prefix, az)),
		}, child(c, pulumi.DependsOn([]pulumi.Resource{igw}))...)
		if err != nil {
			return err
		}
		c.NATGateways = append(c.NATGateways, nat)
		privateRT, err := ec2.NewRouteTable(ctx, n+"-private-rt", &ec2.RouteTableArgs{
			VpcId: c.VPC.ID(), Tags: nameTag(fmt.Sprintf("%s-private-%s", args.Prefix, az)),
		}, child(c)...)
		if err != nil {
			return err
		}
		if _, err := ec2.NewRoute(ctx, n+"-private-default", &ec2.RouteArgs{
			RouteTableId: privateRT.ID(), DestinationCidrBlock: pulumi.String("0.0.0.0/0"), NatGatewayId: nat.ID(),
		}, child(c)...); err != nil {
			return err
		}
		if err := associate(ctx, n+"-hsm-rta", privateRT, hsm, c); err != nil {
			return err
		}
		if err := associate(ctx, n+"-app-rta", privateRT, app, c); err != nil {
			return err
		}
	}
	return nil
}

func associate(ctx *pulumi.Context, name string, rt *ec2.RouteTable, subnet *ec2.Subnet, parent pulumi.Resource) error {
	_, err := ec2.NewRouteTableAssociation(ctx, name, &ec2.RouteTableAssociationArgs{
		RouteTableId: rt.ID(), SubnetId: subnet.ID(),
	}, child(parent)...)
	return err
}

// ACLRule is one rule of the HSM subnets' network ACL.
type ACLRule struct {
	Egress   bool
	CIDR     string
	FromPort int
	ToPort   int
}

// HSMACLRules are the allow rules of the HSM subnets' network ACL; everything else is denied.
// Inbound: the HSM ports from application and HSM subnets, and the return traffic (ephemeral
// ports) of connections the HSMs open to each other. Outbound: ephemeral ports to application
// and HSM subnets, which carries the replies to clients and the HSMs' own connections to the
// HSM ports of their peers (2223-2225 lie inside 1024-65535).
func HSMACLRules(l Layout) []ACLRule {
	var rules []ACLRule
	peers := append(append([]netip.Prefix{}, l.App...), l.HSM...)
	for _, p := range peers {
		rules = append(rules, ACLRule{CIDR: p.String(), FromPort: HSMPortFirst, ToPort: HSMPortLast})
	}
	for _, p := range l.HSM {
		rules = append(rules, ACLRule{CIDR: p.String(), FromPort: 1024, ToPort: 65535})
	}
	for _, p := range peers {
		rules = append(rules, ACLRule{Egress: true, CIDR: p.String(), FromPort: 1024, ToPort: 65535})
	}
	return rules
}

func (c *Network) hsmACL(ctx *pulumi.Context, name string, args NetworkArgs) error {
	subnetIDs := pulumi.StringArray{}
	for _, s := range c.HSMSubnets {
		subnetIDs = append(subnetIDs, s.ID())
	}
	var err error
	c.HSMNetworkACL, err = ec2.NewNetworkAcl(ctx, name+"-hsm-acl", &ec2.NetworkAclArgs{
		VpcId: c.VPC.ID(), SubnetIds: subnetIDs, Tags: nameTag(args.Prefix + "-hsm"),
	}, child(c)...)
	if err != nil {
		return err
	}
	ingress, egress := 100, 100
	for _, r := range HSMACLRules(args.Layout) {
		num, dir := &ingress, "in"
		if r.Egress {
			num, dir = &egress, "out"
		}
		if _, err := ec2.NewNetworkAclRule(ctx, fmt.Sprintf("%s-hsm-acl-%s-%d", name, dir, *num), &ec2.NetworkAclRuleArgs{
			NetworkAclId: c.HSMNetworkACL.ID(), RuleNumber: pulumi.Int(*num), Egress: pulumi.Bool(r.Egress),
			Protocol: pulumi.String("tcp"), RuleAction: pulumi.String("allow"), CidrBlock: pulumi.String(r.CIDR),
			FromPort: pulumi.Int(r.FromPort), ToPort: pulumi.Int(r.ToPort),
		}, child(c)...); err != nil {
			return err
		}
		*num += 10
	}
	return nil
}

func (c *Network) flowLogs(ctx *pulumi.Context, name string, args NetworkArgs) error {
	var err error
	c.FlowLogGroup, err = cloudwatch.NewLogGroup(ctx, name+"-flow-logs", &cloudwatch.LogGroupArgs{
		Name:            pulumi.String(fmt.Sprintf("/personapass/%s/vpc-flow-logs", args.Prefix)),
		KmsKeyId:        args.LogsKeyArn,
		RetentionInDays: pulumi.Int(args.LogRetentionDays),
	}, stateful(c)...)
	if err != nil {
		return err
	}
	role, err := newRoleWithPolicy(ctx, name+"-flow-logs", c, roleSpec{
		description: "Lets VPC Flow Logs write to the stack's flow log group",
		trust:       assumeRolePolicy(ServicePrincipal("vpc-flow-logs.amazonaws.com"), sourceAccount(args.Account)),
		policy: policyJSON(func(v []string) PolicyDocument {
			return NewPolicy(Allow("WriteFlowLogs",
				[]string{"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams"},
				v[0], v[0]+":*"))
		}, c.FlowLogGroup.Arn),
	})
	if err != nil {
		return err
	}
	_, err = ec2.NewFlowLog(ctx, name+"-flow-log", &ec2.FlowLogArgs{
		VpcId: c.VPC.ID(), TrafficType: pulumi.String("ALL"),
		LogDestinationType: pulumi.String("cloud-watch-logs"), LogDestination: c.FlowLogGroup.Arn,
		IamRoleArn: role.Arn, MaxAggregationInterval: pulumi.Int(60),
	}, child(c)...)
	return err
}

// nameTag is the Name tag of a resource; the common tags come from the provider's default tags.
func nameTag(name string) pulumi.StringMap {
	return pulumi.StringMap{"Name": pulumi.String(name)}
}
