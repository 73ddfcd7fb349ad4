// Command hsmplan runs the PersonaPass HSM Pulumi program offline, under Pulumi's mocks, with a
// stack's config file, and prints every resource (type, name, key inputs, protected or not), the
// stack outputs and a monthly cost estimate from the embedded prices file.
//
//	hsmplan --stack prod|dr [--json] [--dir DIR]
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/personapass/hsm/stacks"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hsmplan:", err)
		os.Exit(1)
	}
}

// Report is the --json output.
type Report struct {
	Stack     string           `json:"stack"`
	Resources []ReportResource `json:"resources"`
	Outputs   map[string]any   `json:"outputs"`
	Cost      Cost             `json:"cost"`
}

// ReportResource is one resource of the Report.
type ReportResource struct {
	Type    string         `json:"type"`
	Name    string         `json:"name"`
	Inputs  map[string]any `json:"inputs"`
	Protect bool           `json:"protect"`
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hsmplan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stack := fs.String("stack", "", "stack to plan: prod or dr")
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	dir := fs.String("dir", "", "directory holding Pulumi.yaml (default: the nearest one above the working directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *stack != "prod" && *stack != "dr" {
		return fmt.Errorf("--stack must be prod or dr, got %q", *stack)
	}
	if *dir == "" {
		d, err := findProject()
		if err != nil {
			return err
		}
		*dir = d
	}
	plan, err := stacks.Plan(*dir, *stack)
	if err != nil {
		return err
	}
	prices, err := LoadPrices()
	if err != nil {
		return err
	}
	cost, err := prices.Estimate(plan)
	if err != nil {
		return err
	}
	report := Report{Stack: *stack, Outputs: plan.Outputs, Cost: cost}
	for _, r := range plan.Resources {
		report.Resources = append(report.Resources, ReportResource{Type: r.Type, Name: r.Name, Inputs: r.Inputs, Protect: r.Protect})
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	printText(stdout, report, prices)
	return nil
}

// findProject walks up from the working directory to the directory holding Pulumi.yaml.
func findProject() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "Pulumi.yaml")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no Pulumi.yaml here or above; pass --dir")
		}
		dir = parent
	}
}

// keyInputs renders a resource's scalar inputs, shortened, as "key=value" pairs.
func keyInputs(in map[string]any) string {
	var parts []string
	for k, v := range in {
		switch v.(type) {
		case string, float64, bool:
			s := fmt.Sprint(v)
			if len(s) > 48 {
				s = s[:45] + "..."
			}
			parts = append(parts, k+"="+s)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func printText(w io.Writer, r Report, prices *PriceBook) {
	fmt.Fprintf(w, "Stack %s: %d resources\n\n", r.Stack, len(r.Resources))
	for _, res := range r.Resources {
		protect := "         "
		if res.Protect {
			protect = "protected"
		}
		fmt.Fprintf(w, "%s  %-60s %-32s %s\n", protect, res.Type, res.Name, keyInputs(res.Inputs))
	}
	fmt.Fprintf(w, "\nOutputs:\n")
	keys := make([]string, 0, len(r.Outputs))
	for k := range r.Outputs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if s, ok := r.Outputs[k].(string); ok && strings.Contains(s, "\n") {
			fmt.Fprintf(w, "  %s: |\n    %s\n", k, strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    "))
			continue
		}
		fmt.Fprintf(w, "  %s: %v\n", k, r.Outputs[k])
	}
	fmt.Fprintf(w, "\nMonthly cost estimate (%s):\n", r.Cost.Currency)
	for _, it := range r.Cost.Items {
		fmt.Fprintf(w, "  %10.2f  %-52s %10g x %-9g\n", it.Monthly, it.Item, it.Quantity, it.UnitPrice)
	}
	fmt.Fprintf(w, "  %10.2f  total per month\n\n%s\n", r.Cost.MonthlyTotal, prices.Note)
}
