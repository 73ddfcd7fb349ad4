package infra

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/sns"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Severity names an alert topic.
type Severity string

// The alert severities, one SNS topic each.
const (
	Critical    Severity = "critical"
	Warning     Severity = "warning"
	Operational Severity = "operational"
)

// Severities lists every severity in topic order.
var Severities = []Severity{Critical, Warning, Operational}

const (
	// CloudHSMNamespace is the CloudWatch namespace of CloudHSM's metrics.
	CloudHSMNamespace = "AWS/CloudHSM"
	// AuditMetricsNamespace holds the metrics the program derives from the audit log.
	AuditMetricsNamespace = "PersonaPass/CloudHSM"
	// LoginFailurePattern matches failed logins in the CloudHSM audit log.
	LoginFailurePattern = `"RET_USER_LOGIN_FAILURE"`
	// CapacityAlarmRatio is the share of a limit at which a capacity alarm fires.
	CapacityAlarmRatio = 0.8
	// MaxDetectionSeconds bounds period × evaluation periods of every alarm.
	MaxDetectionSeconds = 300
)

// MonitoringArgs configures the Monitoring component.
type MonitoringArgs struct {
	Prefix        string
	Region        string
	ClusterID     pulumi.StringInput
	AuditLogGroup pulumi.StringInput
	SNSKeyArn     pulumi.StringInput
	Limits        HSMTypeLimits
	// Subscriptions maps each severity to its endpoints: e-mail addresses or https:// URLs.
	Subscriptions map[Severity][]string
}

// Monitoring holds the alert topics, the CloudHSM alarms, the failed-login metric filter and
// the dashboard.
type Monitoring struct {
	pulumi.ResourceState

	Topics    map[Severity]*sns.Topic
	Alarms    []*cloudwatch.MetricAlarm
	Dashboard *cloudwatch.Dashboard
}

// AlarmSpec describes one CloudWatch alarm on a cluster metric.
type AlarmSpec struct {
	Name        string
	Namespace   string
	Metric      string
	Statistic   string
	Comparison  string
	Threshold   float64
	Period      int
	Evaluations int
	Severity    Severity
	Description string
	// ByCluster adds the ClusterId dimension (CloudHSM metrics); derived metrics have none.
	ByCluster bool
}

// AlarmSpecs returns the alarms for an HSM type's limits: health and temperature critical,
// capacity at CapacityAlarmRatio warning, failed logins critical. Each detects within
// MaxDetectionSeconds.
func AlarmSpecs(limits HSMTypeLimits) []AlarmSpec {
	capacity := func(limit int) float64 { return float64(int(float64(limit)*CapacityAlarmRatio + 0.5)) }
	return []AlarmSpec{
		{Name: "hsm-unhealthy", Namespace: CloudHSMNamespace, Metric: "HsmUnhealthy", Statistic: "Maximum",
			Comparison: "GreaterThanOrEqualToThreshold", Threshold: 1, Period: 60, Evaluations: 1, Severity: Critical,
			Description: "An HSM of the cluster reports unhealthy; AWS replaces it, check capacity", ByCluster: true},
		{Name: "hsm-temperature", Namespace: CloudHSMNamespace, Metric: "HsmTemperature", Statistic: "Maximum",
			Comparison: "GreaterThanOrEqualToThreshold", Threshold: capacity(limits.ShutdownTemperatureC), Period: 60,
			Evaluations: 3, Severity: Critical, ByCluster: true,
			Description: fmt.Sprintf("HSM processor temperature at 80%% of the %d°C shutdown point", limits.ShutdownTemperatureC)},
		{Name: "session-capacity", Namespace: CloudHSMNamespace, Metric: "HsmSessionCount", Statistic: "Maximum",
			Comparison: "GreaterThanOrEqualToThreshold", Threshold: capacity(limits.Sessions), Period: 60,
			Evaluations: 5, Severity: Warning, ByCluster: true,
			Description: fmt.Sprintf("Open HSM sessions at 80%% of the %d limit", limits.Sessions)},
		{Name: "token-key-capacity", Namespace: CloudHSMNamespace, Metric: "HsmKeysTokenOccupied", Statistic: "Maximum",
			Comparison: "GreaterThanOrEqualToThreshold", Threshold: capacity(limits.Keys), Period: 300,
			Evaluations: 1, Severity: Warning, ByCluster: true,
			Description: fmt.Sprintf("Token keys at 80%% of the %d keys a cluster holds", limits.Keys)},
		{Name: "session-key-capacity", Namespace: CloudHSMNamespace, Metric: "HsmKeysSessionOccupied", Statistic: "Maximum",
			Comparison: "GreaterThanOrEqualToThreshold", Threshold: capacity(limits.Keys), Period: 300,
			Evaluations: 1, Severity: Warning, ByCluster: true,
			Description: fmt.Sprintf("Session keys at 80%% of the %d keys a cluster holds", limits.Keys)},
		{Name: "login-failures", Namespace: AuditMetricsNamespace, Metric: "LoginFailures", Statistic: "Sum",
			Comparison: "GreaterThanOrEqualToThreshold", Threshold: 3, Period: 300, Evaluations: 1, Severity: Critical,
			Description: "Three or more failed HSM logins in five minutes (RET_USER_LOGIN_FAILURE in the audit log); users lock after repeated failures"},
	}
}

// NewMonitoring creates the Monitoring component (type personapass:infra:Monitoring).
func NewMonitoring(ctx *pulumi.Context, name string, args MonitoringArgs, opts ...pulumi.ResourceOption) (*Monitoring, error) {
	c := &Monitoring{Topics: map[Severity]*sns.Topic{}}
	if err := registerComponent(ctx, "Monitoring", name, c, opts...); err != nil {
		return nil, err
	}
	for _, sev := range Severities {
		topic, err := sns.NewTopic(ctx, fmt.Sprintf("%s-%s", name, sev), &sns.TopicArgs{
			DisplayName:    pulumi.String(fmt.Sprintf("PersonaPass HSM %s (%s)", sev, args.Prefix)),
			KmsMasterKeyId: args.SNSKeyArn,
		}, child(c)...)
		if err != nil {
			return nil, err
		}
		c.Topics[sev] = topic
		for i, endpoint := range args.Subscriptions[sev] {
			protocol := "email"
			if strings.HasPrefix(endpoint, "https://") {
				protocol = "https"
			}
			if _, err := sns.NewTopicSubscription(ctx, fmt.Sprintf("%s-%s-sub-%d", name, sev, i), &sns.TopicSubscriptionArgs{
				Topic: topic.Arn, Protocol: pulumi.String(protocol), Endpoint: pulumi.String(endpoint),
			}, child(c)...); err != nil {
				return nil, err
			}
		}
	}
	if _, err := cloudwatch.NewLogMetricFilter(ctx, name+"-login-failures", &cloudwatch.LogMetricFilterArgs{
		LogGroupName: args.AuditLogGroup,
		Pattern:      pulumi.String(LoginFailurePattern),
		MetricTransformation: cloudwatch.LogMetricFilterMetricTransformationArgs{
			Name: pulumi.String("LoginFailures"), Namespace: pulumi.String(AuditMetricsNamespace),
			Value: pulumi.String("1"), DefaultValue: pulumi.String("0"),
		},
	}, child(c)...); err != nil {
		return nil, err
	}
	for _, spec := range AlarmSpecs(args.Limits) {
		alarmArgs := &cloudwatch.MetricAlarmArgs{
			Name:               pulumi.Sprintf("%s-%s", args.Prefix, spec.Name),
			AlarmDescription:   pulumi.String(spec.Description),
			Namespace:          pulumi.String(spec.Namespace),
			MetricName:         pulumi.String(spec.Metric),
			Statistic:          pulumi.String(spec.Statistic),
			ComparisonOperator: pulumi.String(spec.Comparison),
			Threshold:          pulumi.Float64(spec.Threshold),
			Period:             pulumi.Int(spec.Period),
			EvaluationPeriods:  pulumi.Int(spec.Evaluations),
			TreatMissingData:   pulumi.String("notBreaching"),
			ActionsEnabled:     pulumi.Bool(true),
			AlarmActions:       pulumi.Array{c.Topics[spec.Severity].Arn},
			OkActions:          pulumi.Array{c.Topics[Operational].Arn},
		}
		if spec.ByCluster {
			alarmArgs.Dimensions = pulumi.StringMap{"ClusterId": args.ClusterID}
		}
		alarm, err := cloudwatch.NewMetricAlarm(ctx, name+"-"+spec.Name, alarmArgs, child(c)...)
		if err != nil {
			return nil, err
		}
		c.Alarms = append(c.Alarms, alarm)
	}
	var err error
	c.Dashboard, err = cloudwatch.NewDashboard(ctx, name+"-dashboard", &cloudwatch.DashboardArgs{
		DashboardName: pulumi.String(args.Prefix + "-cloudhsm"),
		DashboardBody: args.ClusterID.ToStringOutput().ApplyT(func(id string) (string, error) {
			return dashboardBody(args.Region, id, args.Limits)
		}).(pulumi.StringOutput),
	}, child(c)...)
	if err != nil {
		return nil, err
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"criticalTopicArn": c.Topics[Critical].Arn, "warningTopicArn": c.Topics[Warning].Arn,
		"operationalTopicArn": c.Topics[Operational].Arn,
	})
}

// dashboardBody renders the CloudWatch dashboard: one graph per alarmed metric.
func dashboardBody(region, clusterID string, limits HSMTypeLimits) (string, error) {
	var widgets []map[string]any
	for i, spec := range AlarmSpecs(limits) {
		metric := []any{spec.Namespace, spec.Metric}
		if spec.ByCluster {
			metric = append(metric, "ClusterId", clusterID)
		}
		widgets = append(widgets, map[string]any{
			"type": "metric", "x": (i % 2) * 12, "y": (i / 2) * 6, "width": 12, "height": 6,
			"properties": map[string]any{
				"title": spec.Description, "region": region, "stat": spec.Statistic, "period": spec.Period,
				"metrics": []any{metric},
				"annotations": map[string]any{"horizontal": []any{map[string]any{
					"label": "alarm", "value": spec.Threshold,
				}}},
			},
		})
	}
	b, err := json.Marshal(map[string]any{"widgets": widgets})
	return string(b), err
}
