package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	secpecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
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

// algorithmsFor lists the algorithms that fit a key type.
func algorithmsFor(t hsmclient.KeyType) []hsmclient.Algorithm {
	switch t {
	case hsmclient.KeyECP256, hsmclient.KeyECP384, hsmclient.KeyECSecp256k1:
		return []hsmclient.Algorithm{hsmclient.AlgECDSASHA256, hsmclient.AlgECDSASHA384}
	case hsmclient.KeyEd25519:
		return []hsmclient.Algorithm{hsmclient.AlgEd25519}
	case hsmclient.KeyRSA2048, hsmclient.KeyRSA3072, hsmclient.KeyRSA4096:
		return []hsmclient.Algorithm{hsmclient.AlgRSAPSSSHA256, hsmclient.AlgRSAPKCS1SHA256}
	}
	return nil
}

// chooseAlgorithm returns --alg, or the key type's default when it is empty,
// checking that it fits the key.
func chooseAlgorithm(key hsmclient.KeyInfo, flag string) (hsmclient.Algorithm, error) {
	fits := algorithmsFor(key.Type)
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

// hashOf returns the hash an algorithm signs, or 0 for Ed25519, which signs
// the message itself.
func hashOf(alg hsmclient.Algorithm) crypto.Hash {
	switch alg {
	case hsmclient.AlgEd25519:
		return 0
	case hsmclient.AlgECDSASHA384:
		return crypto.SHA384
	}
	return crypto.SHA256
}

// pssOptions are the PSS parameters of rsa-pss-sha256: salt = hash length (JWS PS256).
var pssOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}

// readMessage returns what an algorithm signs: the SHA-2 digest of the input,
// hashed as it streams in (any size), or for Ed25519 the message itself (at
// most 16 KiB, the HSM's buffer limit).
func (a *app) readMessage(path string, alg hsmclient.Algorithm) ([]byte, error) {
	h := hashOf(alg)
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

// signPrepared signs what readMessage returned.
func signPrepared(ctx context.Context, s *hsmclient.Signer, alg hsmclient.Algorithm, prepared []byte) ([]byte, error) {
	switch alg {
	case hsmclient.AlgEd25519:
		return s.SignMessage(ctx, alg, prepared)
	case hsmclient.AlgRSAPSSSHA256:
		return s.SignContext(ctx, prepared, pssOptions)
	}
	return s.SignContext(ctx, prepared, hashOf(alg))
}

// verifyPrepared checks a signature over what readMessage returned, in
// software. It returns nil or hsmclient.ErrSignatureInvalid.
func verifyPrepared(pub crypto.PublicKey, alg hsmclient.Algorithm, prepared, sig []byte) error {
	if alg == hsmclient.AlgEd25519 {
		return hsmclient.VerifyMessage(pub, alg, prepared, sig)
	}
	var ok bool
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, prepared, sig)
	case *secp256k1.PublicKey:
		parsed, err := secpecdsa.ParseDERSignature(sig)
		ok = err == nil && parsed.Verify(prepared, k)
	case ed25519.PublicKey:
		return fmt.Errorf("%w: %s does not fit an Ed25519 key", hsmclient.ErrWrongKeyType, alg)
	case *rsa.PublicKey:
		if alg == hsmclient.AlgRSAPSSSHA256 {
			ok = rsa.VerifyPSS(k, crypto.SHA256, prepared, sig, pssOptions) == nil
		} else {
			ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, prepared, sig) == nil
		}
	default:
		return fmt.Errorf("%w: cannot verify with a %T", hsmclient.ErrWrongKeyType, pub)
	}
	if !ok {
		return hsmclient.ErrSignatureInvalid
	}
	return nil
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
			sig, err := signPrepared(ctx, s, alg, prepared)
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
			err = verifyPrepared(key.Public, alg, prepared, sig)
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
