package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"

	"github.com/personapass/hsm/stacks"
)

//go:embed prices.json
var pricesJSON []byte

// Price is one unit price with where and when it was recorded.
type Price struct {
	UnitPrice float64 `json:"unit_price"`
	Unit      string  `json:"unit"`
	Source    string  `json:"source"`
	Date      string  `json:"date"`
	Confirmed bool    `json:"confirmed"`
}

// PriceBook is the embedded prices file.
type PriceBook struct {
	Currency      string             `json:"currency"`
	HoursPerMonth float64            `json:"hours_per_month"`
	Note          string             `json:"note"`
	Prices        map[string]Price   `json:"prices"`
	Assumptions   map[string]float64 `json:"assumptions"`
}

// LoadPrices parses the embedded prices file.
func LoadPrices() (*PriceBook, error) {
	var b PriceBook
	if err := json.Unmarshal(pricesJSON, &b); err != nil {
		return nil, fmt.Errorf("prices.json: %w", err)
	}
	return &b, nil
}

// CostItem is one line of the estimate.
type CostItem struct {
	Item      string  `json:"item"`
	Quantity  float64 `json:"quantity"`
	UnitPrice float64 `json:"unit_price"`
	Monthly   float64 `json:"monthly"`
	Source    string  `json:"source"`
}

// Cost is a monthly estimate.
type Cost struct {
	Currency     string     `json:"currency"`
	MonthlyTotal float64    `json:"monthly_total"`
	Items        []CostItem `json:"items"`
}

// Estimate prices a plan: counts of billed resources from the plan, traffic and storage from the
// prices file's assumptions.
func (b *PriceBook) Estimate(p *stacks.PlanResult) (Cost, error) {
	count := func(typ string) float64 { return float64(len(p.Find(typ))) }
	hours := b.HoursPerMonth
	a := b.Assumptions
	lines := []struct {
		item, price string
		quantity    float64
		basis       string
	}{
		{"CloudHSM " + p.Config.HSMType + " HSM-hours", "cloudhsm_hsm2m_medium_hour", count(stacks.TypeHSM) * hours,
			fmt.Sprintf("%.0f HSMs x %.0f h", count(stacks.TypeHSM), hours)},
		{"NAT gateway-hours", "nat_gateway_hour", count("aws:ec2/natGateway:NatGateway") * hours,
			fmt.Sprintf("%.0f NAT gateways x %.0f h", count("aws:ec2/natGateway:NatGateway"), hours)},
		{"NAT gateway data processed (GB)", "nat_gateway_gb", a["nat_gb_per_month"], "assumed GB/month"},
		{"Public IPv4 address-hours (NAT EIPs)", "public_ipv4_hour", count("aws:ec2/eip:Eip") * hours,
			fmt.Sprintf("%.0f EIPs x %.0f h", count("aws:ec2/eip:Eip"), hours)},
		{"KMS customer-managed keys", "kms_key_month", count(stacks.TypeKMSKey), "keys in the plan"},
		{"CloudWatch alarms", "cloudwatch_alarm_month", count(stacks.TypeMetricAlarm), "alarms in the plan"},
		{"CloudWatch dashboards", "cloudwatch_dashboard_month", count("aws:cloudwatch/dashboard:Dashboard"), "dashboards in the plan"},
		{"CloudWatch Logs ingestion (flow + audit logs, GB)", "cloudwatch_logs_ingest_gb",
			a["flow_log_gb_per_month"] + a["audit_log_gb_per_month"], "assumed GB/month"},
		{"S3 backup storage, bucket and replica (GB-month)", "s3_standard_gb_month",
			a["backup_gb_stored"] * count(stacks.TypeBucket), "assumed GB per bucket"},
		{"S3 cross-region replication transfer (GB)", "inter_region_transfer_gb", a["backup_gb_written_per_month"], "assumed GB/month"},
		{"SNS e-mail notifications", "sns_email_notification", a["alert_emails_per_month"], "assumed per month"},
	}
	c := Cost{Currency: b.Currency}
	for _, l := range lines {
		price, ok := b.Prices[l.price]
		if !ok {
			return Cost{}, fmt.Errorf("prices.json has no price %q", l.price)
		}
		monthly := round2(l.quantity * price.UnitPrice)
		c.Items = append(c.Items, CostItem{
			Item: l.item, Quantity: l.quantity, UnitPrice: price.UnitPrice, Monthly: monthly,
			Source: fmt.Sprintf("%s; %s per %s, recorded %s%s; quantity: %s", l.price, fmtMoney(price.UnitPrice),
				price.Unit, price.Date, unconfirmed(price), l.basis),
		})
		c.MonthlyTotal += monthly
	}
	c.MonthlyTotal = round2(c.MonthlyTotal)
	return c, nil
}

func unconfirmed(p Price) string {
	if p.Confirmed {
		return ""
	}
	return ", unconfirmed"
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

func fmtMoney(v float64) string { return fmt.Sprintf("$%g", v) }
