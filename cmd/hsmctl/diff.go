package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/personapass/hsm/hsmclient"
)

func newKeysDiffCmd(a *app) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "diff",
		Short: "List keys present on one cluster and missing on another",
		Long: `Compares the keys (by label and CKA_ID) of every configured cluster. A DR
cluster restored from a backup lacks every key created after that backup; run
this after key changes and copy a fresh backup to the DR region when it reports
differences. Exit status: 0 when every cluster holds the same keys, 1 when they
differ, 2 on errors (for instance a cluster that cannot be reached).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.openClient(cmd.Context())
			if err != nil {
				return err
			}
			diffs, err := c.DiffKeys(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if diffs == nil {
					diffs = []hsmclient.KeyDifference{}
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(diffs); err != nil {
					return err
				}
			} else if len(diffs) == 0 {
				fmt.Fprintf(a.stdout, "all clusters (%s) hold the same keys\n", strings.Join(c.Clusters(), ", "))
			} else {
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "LABEL\tTYPE\tID\tPRESENT ON\tMISSING ON")
				for _, d := range diffs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Label, d.Type, d.ID, strings.Join(d.PresentOn, ","), strings.Join(d.MissingOn, ","))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if len(diffs) > 0 {
				return withCode(exitNo, nil)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {label, id, type, present_on, missing_on}")
	return c
}
