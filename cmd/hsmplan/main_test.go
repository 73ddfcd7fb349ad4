package main

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"github.com/personapass/hsm/stacks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func planJSON(t *testing.T, stack string) (map[string]any, Report) {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, run([]string{"--stack", stack, "--json", "--dir", "../.."}, &out, &out))
	var raw map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &raw))
	var report Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &report))
	return raw, report
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestJSONHasTheIssuesShape(t *testing.T) {
	raw, report := planJSON(t, "prod")
	assert.ElementsMatch(t, []string{"stack", "resources", "outputs", "cost"}, keys(raw))
	assert.Equal(t, "prod", raw["stack"])
	res := raw["resources"].([]any)
	require.NotEmpty(t, res)
	for _, r := range res {
		assert.ElementsMatch(t, []string{"type", "name", "inputs", "protect"}, keys(r.(map[string]any)))
	}
	cost := raw["cost"].(map[string]any)
	assert.ElementsMatch(t, []string{"currency", "monthly_total", "items"}, keys(cost))
	for _, it := range cost["items"].([]any) {
		assert.ElementsMatch(t, []string{"item", "quantity", "unit_price", "monthly", "source"}, keys(it.(map[string]any)))
	}
	assert.Equal(t, "USD", report.Cost.Currency)
	assert.NotEmpty(t, report.Outputs["hsmclientConfig"])
}

func TestReportsProtectAndEveryResource(t *testing.T) {
	_, report := planJSON(t, "dr")
	plan, err := stacks.Plan("../..", "dr")
	require.NoError(t, err)
	require.Len(t, report.Resources, len(plan.Resources))
	protected := map[string]bool{}
	for _, r := range report.Resources {
		if r.Protect {
			protected[r.Type] = true
		}
		if r.Type == stacks.TypeCluster {
			assert.True(t, r.Protect)
			assert.Equal(t, plan.Config.SourceBackupID, r.Inputs["sourceBackupIdentifier"])
		}
		if r.Type == "aws:ec2/vpc:Vpc" {
			assert.False(t, r.Protect)
		}
	}
	for _, typ := range stacks.StatefulTypes {
		assert.True(t, protected[typ], "%s reported unprotected", typ)
	}
}

func TestCostFromPricesFile(t *testing.T) {
	_, prod := planJSON(t, "prod")
	_, dr := planJSON(t, "dr")
	book, err := LoadPrices()
	require.NoError(t, err)
	for id, p := range book.Prices {
		assert.NotEmpty(t, p.Source, "%s has no source", id)
		assert.Regexp(t, `^\d{4}-\d{2}-\d{2}$`, p.Date, "%s has no date", id)
		assert.Positive(t, p.UnitPrice, id)
	}
	hsm := book.Prices["cloudhsm_hsm2m_medium_hour"]
	assert.InDelta(t, 1.60, hsm.UnitPrice, 1e-9)
	assert.False(t, hsm.Confirmed, "the hsm2m.medium price is not confirmed on AWS's page")

	for _, tc := range []struct {
		report Report
		hsms   float64
	}{{prod, 3}, {dr, 2}} {
		sum := 0.0
		for _, it := range tc.report.Cost.Items {
			assert.InDelta(t, it.Quantity*it.UnitPrice, it.Monthly, 0.006, it.Item)
			assert.NotEmpty(t, it.Source)
			sum += it.Monthly
		}
		assert.InDelta(t, sum, tc.report.Cost.MonthlyTotal, 0.006)
		first := tc.report.Cost.Items[0]
		assert.Equal(t, tc.hsms*730, first.Quantity)
		assert.InDelta(t, tc.hsms*730*1.60, first.Monthly, 1e-6)
	}
	// Both stacks together, against the plan's own $6,335 per month (see the README's Cost section).
	both := prod.Cost.MonthlyTotal + dr.Cost.MonthlyTotal
	assert.Less(t, math.Abs(both-6335)/6335, 0.10, "prod+dr %.2f vs the plan's 6335", both)
}

func TestTextOutputAndBadFlags(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run([]string{"--stack", "prod", "--dir", "../.."}, &out, &out))
	text := out.String()
	assert.Contains(t, text, "protected  aws:cloudhsmv2/cluster:Cluster")
	assert.Contains(t, text, "total per month")
	assert.Contains(t, text, "hsmclientConfig: |")

	var errOut bytes.Buffer
	err := run([]string{"--stack", "staging", "--dir", "../.."}, &errOut, &errOut)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--stack must be prod or dr")
}
