package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/personapass/hsm/hsmclient"
	"github.com/spf13/cobra"
)

// healthOutput is what health --json prints: the library's report, plus the
// error when no client could be opened at all.
type healthOutput struct {
	hsmclient.HealthReport
	Error string `json:"error,omitempty"`
}

func newHealthCmd(a *app) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "health",
		Short: "Probe every configured cluster",
		Long: `Probes every configured cluster and reports its state, probe latency and
sessions. Exit code 0 when at least one cluster can serve (status "ok" or
"degraded"), 1 when none can ("unavailable": unreachable module, unknown
token, refused PIN...), 2 on configuration errors (bad file, missing PIN file).`,
		Example: "  hsmctl health --json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, path, err := a.loadConfig()
			if err != nil {
				return err
			}
			var out healthOutput
			c, openErr := hsmclient.Open(cmd.Context(), cfg)
			if errors.Is(openErr, hsmclient.ErrInvalidConfig) {
				return fmt.Errorf("%s: %w", path, openErr)
			}
			if openErr != nil {
				out = healthOutput{
					HealthReport: hsmclient.HealthReport{Status: "unavailable", Clusters: []hsmclient.ClusterHealth{}},
					Error:        errorLine(openErr),
				}
			} else {
				a.client, a.configPath = c, path
				out.HealthReport = c.Health(cmd.Context())
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				printHealth(a, out)
			}
			if openErr != nil {
				return withCode(exitNo, fmt.Errorf("no cluster is usable: %w", openErr))
			}
			if !out.Ready() {
				return withCode(exitNo, fmt.Errorf("no cluster is usable (status %s)", out.Status))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}

func printHealth(a *app, out healthOutput) {
	fmt.Fprintf(a.stdout, "status: %s\n", out.Status)
	if len(out.Clusters) == 0 {
		return
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tSTATE\tPROBE\tSESSIONS OPEN\tIN USE\tLAST ERROR")
	for _, c := range out.Clusters {
		last := c.LastError
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f ms\t%d\t%d\t%s\n", c.Name, c.State, c.ProbeLatencyMS, c.OpenSessions, c.InUseSessions, errorLineString(last))
	}
	tw.Flush()
}

// errorLineString is errorLine for a message that is already a string.
func errorLineString(s string) string {
	return errorLine(fmt.Errorf("%s", s))
}
