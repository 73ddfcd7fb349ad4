package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/personapass/hsm/hsmclient"
	"github.com/spf13/cobra"
)

// algNames lists the --alg values for help texts.
func algNames() string {
	names := make([]string, 0, len(hsmclient.Algorithms()))
	for _, a := range hsmclient.Algorithms() {
		names = append(names, string(a))
	}
	return strings.Join(names, "|")
}

// chooseAlgorithm returns --alg, or the key type's default when it is empty,
// checking that it fits the key.
func chooseAlgorithm(key hsmclient.KeyInfo, flag string) (hsmclient.Algorithm, error) {
	fits := hsmclient.AlgorithmsFor(key.Type)
	if len(fits) == 0 {
		return "", fmt.Errorf("%w: key %q is %s, not a signing key pair", hsmclient.ErrWrongKeyType, key.Label, key.Type)
	}
	if flag == "" {
		return hsmclient.DefaultAlgorithm(key.Type)
	}
	alg, err := hsmclient.ParseAlgorithm(flag)
	if err != nil {
		return "", err
	}
	for _, f := range fits {
		if f == alg {
			return alg, nil
		}
	}
	return "", fmt.Errorf("%w: --alg %s does not fit %s key %q (use one of %v)", hsmclient.ErrWrongKeyType, alg, key.Type, key.Label, fits)
}

// readMessage returns what an algorithm signs: the SHA-2 digest of the input,
// hashed as it streams in (any size), or for Ed25519 the message itself (at
// most 16 KiB, the HSM's buffer limit).
func (a *app) readMessage(path string, alg hsmclient.Algorithm) ([]byte, error) {
	h := alg.Hash()
	if h == 0 {
		return a.readInput(path, maxRawMessage, "Ed25519 messages, which the HSM signs whole")
	}
	r, err := a.openInput(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	d := h.New()
	n, err := io.Copy(d, r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", inputName(path), err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%s is empty", inputName(path))
	}
	return d.Sum(nil), nil
}

func newSignCmd(a *app) *cobra.Command {
	var label, algFlag, in, out string
	c := &cobra.Command{
		Use:   "sign",
		Short: "Sign a file with a key in the HSM",
		Long: `Signs the input with the key under --label. ECDSA signatures are ASN.1 DER,
RSA and Ed25519 signatures are raw bytes; all are what "openssl dgst -verify" or
"openssl pkeyutl -verify" read. Without --alg the key type's usual algorithm is
used (ecdsa-sha256 for P-256 and secp256k1, ecdsa-sha384 for P-384, ed25519,
rsa-pss-sha256 with a 32-byte salt for RSA).

Hashed algorithms read input of any size; Ed25519 signs at most 16 KiB.`,
		Example: `  hsmctl sign --label did-issuer-1 --in credential.json --out credential.sig
  echo -n hello | hsmctl sign --label demo-ed25519 --alg ed25519 --in - --out - | xxd`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.openClient(ctx)
			if err != nil {
				return err
			}
			s, err := c.Signer(ctx, label)
			if err != nil {
				return err
			}
			alg, err := chooseAlgorithm(s.Key(), algFlag)
			if err != nil {
				return err
			}
			prepared, err := a.readMessage(in, alg)
			if err != nil {
				return err
			}
			sig, err := s.SignDigest(ctx, alg, prepared)
			if err != nil {
				return err
			}
			return a.writeOutput(out, sig, 0o644)
		},
	}
	c.Flags().StringVar(&label, "label", "", "signing key `LABEL`")
	c.Flags().StringVar(&algFlag, "alg", "", "`ALGORITHM`: "+algNames()+" (default: from the key type)")
	c.Flags().StringVar(&in, "in", "-", "message `FILE` (- for stdin)")
	c.Flags().StringVar(&out, "out", "-", "signature `FILE` (- for stdout)")
	requireFlags(c, "label")
	return c
}

func newVerifyCmd(a *app) *cobra.Command {
	var label, algFlag, in, sigPath string
	c := &cobra.Command{
		Use:   "verify",
		Short: "Verify a signature with a key's public half",
		Long: `Verifies the signature in --sig over the input with the public key under
--label (read from the HSM, checked in software). Exit code 0: valid;
1: invalid; 2: an error (unknown key, wrong algorithm, unreadable file...).`,
		Example: "  hsmctl verify --label did-issuer-1 --in credential.json --sig credential.sig",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "-" && sigPath == "-" {
				return errors.New("--in and --sig cannot both read standard input")
			}
			ctx := cmd.Context()
			c, err := a.openClient(ctx)
			if err != nil {
				return err
			}
			key, err := c.KeyInfo(ctx, label)
			if err != nil {
				return err
			}
			alg, err := chooseAlgorithm(key, algFlag)
			if err != nil {
				return err
			}
			sig, err := a.readInput(sigPath, maxSignature, "signatures")
			if err != nil {
				return err
			}
			prepared, err := a.readMessage(in, alg)
			if err != nil {
				return err
			}
			err = hsmclient.VerifyDigest(key.Public, alg, prepared, sig)
			switch {
			case errors.Is(err, hsmclient.ErrSignatureInvalid):
				return withCode(exitNo, fmt.Errorf("signature invalid (%s, key %q)", alg, label))
			case err != nil:
				return err
			}
			fmt.Fprintf(a.stdout, "signature valid (%s, key %q)\n", alg, label)
			return nil
		},
	}
	c.Flags().StringVar(&label, "label", "", "key `LABEL`")
	c.Flags().StringVar(&algFlag, "alg", "", "`ALGORITHM`: "+algNames()+" (default: from the key type)")
	c.Flags().StringVar(&in, "in", "-", "message `FILE` (- for stdin)")
	c.Flags().StringVar(&sigPath, "sig", "", "signature `FILE` (- for stdin)")
	requireFlags(c, "label", "sig")
	return c
}
