package main

import (
	"fmt"

	"github.com/personapass/hsm/hsmclient"
	"github.com/spf13/cobra"
)

func newPubkeyCmd(a *app) *cobra.Command {
	var label, out string
	c := &cobra.Command{
		Use:   "pubkey",
		Short: "Print a key pair's public key as PEM (SubjectPublicKeyInfo)",
		Long: `Prints the public half of the key pair under --label as a PEM "PUBLIC KEY"
block (X.509 SubjectPublicKeyInfo), which OpenSSL and most libraries read.`,
		Example: `  hsmctl pubkey --label did-issuer-1 > issuer.pem
  openssl pkey -pubin -in issuer.pem -text -noout`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.openClient(cmd.Context())
			if err != nil {
				return err
			}
			key, err := c.KeyInfo(cmd.Context(), label)
			if err != nil {
				return err
			}
			if key.Public == nil {
				return fmt.Errorf("%w: key %q is %s, a secret key without a public half", hsmclient.ErrWrongKeyType, label, key.Type)
			}
			pem, err := hsmclient.MarshalPublicKeyPEM(key.Public)
			if err != nil {
				return err
			}
			return a.writeOutput(out, pem, 0o644)
		},
	}
	c.Flags().StringVar(&label, "label", "", "key `LABEL`")
	c.Flags().StringVar(&out, "out", "-", "output `FILE` (- for stdout)")
	requireFlags(c, "label")
	return c
}
