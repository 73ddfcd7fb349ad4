package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/personapass/hsm/hsmclient"
	"github.com/spf13/cobra"
)

func newKeysCmd(a *app) *cobra.Command {
	return groupCmd("keys", "Generate, list, delete and compare keys",
		newKeysGenerateCmd(a), newKeysListCmd(a), newKeysDeleteCmd(a), newKeysDiffCmd(a))
}

// keyTypeNames lists the --type values for help texts.
func keyTypeNames() string {
	s := ""
	for i, t := range hsmclient.KeyTypes() {
		if i > 0 {
			s += "|"
		}
		s += string(t)
	}
	return s
}

func newKeysGenerateCmd(a *app) *cobra.Command {
	var label, typ string
	c := &cobra.Command{
		Use:   "generate",
		Short: "Generate a key inside the HSM (on the primary cluster)",
		Long: `Generates a key inside the primary cluster's HSM. Private and secret keys are
token objects, private, sensitive and never extractable. A label already in use
is refused.`,
		Example: "  hsmctl keys generate --label did-issuer-1 --type ec-p256",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := hsmclient.ParseKeyType(typ)
			if err != nil {
				return err
			}
			c, err := a.openClient(cmd.Context())
			if err != nil {
				return err
			}
			info, err := c.GenerateKey(cmd.Context(), label, t)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "generated %s key %q (id %s)\n", info.Type, info.Label, info.ID)
			return nil
		},
	}
	c.Flags().StringVar(&label, "label", "", "key `LABEL` (unique on the token)")
	c.Flags().StringVar(&typ, "type", "", "key `TYPE`: "+keyTypeNames())
	requireFlags(c, "label", "type")
	return c
}

func newKeysListCmd(a *app) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the keys on the highest-priority usable cluster",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.openClient(cmd.Context())
			if err != nil {
				return err
			}
			keys, err := c.ListKeys(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if keys == nil {
					keys = []hsmclient.KeyInfo{}
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(keys)
			}
			if len(keys) == 0 {
				fmt.Fprintln(a.stdout, "no keys")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LABEL\tTYPE\tID")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Label, k.Type, k.ID)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {label, id, type}")
	return c
}

func newKeysDeleteCmd(a *app) *cobra.Command {
	var label string
	c := &cobra.Command{
		Use:   "delete",
		Short: "Destroy a key (both halves of a key pair) on the primary cluster",
		Long: `Destroys every object with the label on the primary cluster. This cannot be
undone: data signed or encrypted with the key stays verifiable or readable only
through its exported public key or not at all.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.openClient(cmd.Context())
			if err != nil {
				return err
			}
			if err := c.DeleteKey(cmd.Context(), label); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "deleted key %q\n", label)
			return nil
		},
	}
	c.Flags().StringVar(&label, "label", "", "key `LABEL`")
	requireFlags(c, "label")
	return c
}
