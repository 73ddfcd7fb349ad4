package main

import (
	"github.com/personapass/hsm/hsmclient"
	"github.com/spf13/cobra"
)

func newEncryptCmd(a *app) *cobra.Command {
	var label, in, out, aad string
	c := &cobra.Command{
		Use:   "encrypt",
		Short: "Encrypt with an AES-256 key in the HSM (AES-GCM)",
		Long: `Encrypts the input (1 byte to 16 KiB) with AES-256-GCM under the key --label.
The output is nonce (12 bytes, from the HSM) | ciphertext | tag (16 bytes).
--aad is authenticated but not encrypted; decrypt needs the same value.`,
		Example: "  hsmctl encrypt --label demo-aes-256 --in secret.txt --out secret.bin --aad user-42",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			plaintext, err := a.readInput(in, hsmclient.MaxGCMPlaintext, "AES-GCM plaintext")
			if err != nil {
				return err
			}
			c, err := a.openClient(cmd.Context())
			if err != nil {
				return err
			}
			sealed, err := c.Encrypt(cmd.Context(), label, plaintext, aadBytes(aad))
			if err != nil {
				return err
			}
			return a.writeOutput(out, sealed, 0o644)
		},
	}
	c.Flags().StringVar(&label, "label", "", "AES key `LABEL`")
	c.Flags().StringVar(&in, "in", "-", "plaintext `FILE` (- for stdin)")
	c.Flags().StringVar(&out, "out", "-", "output `FILE` (- for stdout)")
	c.Flags().StringVar(&aad, "aad", "", "additional authenticated data (`STRING`)")
	requireFlags(c, "label")
	return c
}

func newDecryptCmd(a *app) *cobra.Command {
	var label, in, out, aad string
	c := &cobra.Command{
		Use:   "decrypt",
		Short: "Decrypt data sealed by encrypt",
		Long: `Decrypts nonce | ciphertext | tag made by "hsmctl encrypt". Tampered data, a
wrong key or a wrong --aad all fail with the same error ("message
authentication failed"), and no output is written.`,
		Example: "  hsmctl decrypt --label demo-aes-256 --in secret.bin --out secret.txt --aad user-42",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sealed, err := a.readInput(in, hsmclient.GCMNonceSize+hsmclient.MaxGCMPlaintext+hsmclient.GCMTagSize, "AES-GCM sealed data")
			if err != nil {
				return err
			}
			c, err := a.openClient(cmd.Context())
			if err != nil {
				return err
			}
			plaintext, err := c.Decrypt(cmd.Context(), label, sealed, aadBytes(aad))
			if err != nil {
				return err
			}
			return a.writeOutput(out, plaintext, 0o600)
		},
	}
	c.Flags().StringVar(&label, "label", "", "AES key `LABEL`")
	c.Flags().StringVar(&in, "in", "-", "sealed `FILE` (- for stdin)")
	c.Flags().StringVar(&out, "out", "-", "plaintext `FILE` (- for stdout)")
	c.Flags().StringVar(&aad, "aad", "", "additional authenticated data (`STRING`), as given to encrypt")
	requireFlags(c, "label")
	return c
}

// aadBytes turns --aad into the library's additional data (nil when empty).
func aadBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}
