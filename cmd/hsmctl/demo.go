package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/personapass/hsm/hsmclient"
	"github.com/spf13/cobra"
)

// demoKeys are the keys the demo uses, generated when absent.
var demoKeys = []hsmclient.KeyType{
	hsmclient.KeyECP256, hsmclient.KeyECSecp256k1, hsmclient.KeyEd25519, hsmclient.KeyRSA2048, hsmclient.KeyAES256,
}

func demoLabel(t hsmclient.KeyType) string { return "demo-" + string(t) }

// demoSignatures are the (key, algorithm) pairs the demo signs with.
var demoSignatures = []struct {
	key hsmclient.KeyType
	alg hsmclient.Algorithm
}{
	{hsmclient.KeyECP256, hsmclient.AlgECDSASHA256},
	{hsmclient.KeyECSecp256k1, hsmclient.AlgECDSASHA256},
	{hsmclient.KeyEd25519, hsmclient.AlgEd25519},
	{hsmclient.KeyRSA2048, hsmclient.AlgRSAPSSSHA256},
	{hsmclient.KeyRSA2048, hsmclient.AlgRSAPKCS1SHA256},
}

func newDemoCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Sign and verify a credential end to end with keys inside the HSM",
		Long: `Runs the PersonaPass main job end to end against the configured HSM:

  1. without any configuration, creates a local SoftHSM token in .dev/
     (as "hsmctl dev init --dir .dev" would);
  2. generates the demo keys when absent: ` + demoKeyList() + `;
  3. signs a sample verifiable credential (JSON) with every signing key;
  4. verifies every signature with Go and with the openssl command line from
     the exported PEM public key, and checks that a tampered credential fails;
  5. encrypts and decrypts a message with AES-256-GCM and shows that tampered
     ciphertext and wrong additional data are rejected.

Exit code 0 when every check passes, 1 when one fails, 2 on errors.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), a) },
	}
}

func demoKeyList() string {
	s := ""
	for i, t := range demoKeys {
		if i > 0 {
			s += ", "
		}
		s += demoLabel(t)
	}
	return s
}

// demoCredential returns a sample W3C verifiable credential issued now.
func demoCredential(now time.Time) []byte {
	return fmt.Appendf(nil, `{
  "@context": ["https://www.w3.org/2018/credentials/v1"],
  "type": ["VerifiableCredential", "PersonaPassIdentityCredential"],
  "issuer": "did:example:personapass-issuer",
  "issuanceDate": %q,
  "credentialSubject": {
    "id": "did:example:holder-7f3a9c",
    "givenName": "Ada",
    "familyName": "Lovelace",
    "over18": true
  }
}
`, now.UTC().Format(time.RFC3339))
}

// demoReport counts checks and prints them.
type demoReport struct {
	w        io.Writer
	passed   int
	failures []string
}

func (r *demoReport) check(ok bool, what string) string {
	if ok {
		r.passed++
		return "ok"
	}
	r.failures = append(r.failures, what)
	return "FAIL"
}

func runDemo(ctx context.Context, a *app) error {
	w := a.stdout
	fmt.Fprintln(w, "PersonaPass HSM demo")
	fmt.Fprintln(w, "====================")
	if _, _, err := a.findConfig(); errors.Is(err, errNoConfig) {
		dir := filepath.Dir(defaultConfigPath)
		fmt.Fprintf(w, "No configuration found: creating a local SoftHSM token in %s/ (hsmctl dev init --dir %s)\n", dir, dir)
		if _, err := devInit(dir, "", false); err != nil {
			return fmt.Errorf("dev init: %w", err)
		}
		a.configFlag = defaultConfigPath
	} else if err != nil {
		return err
	}
	c, err := a.openClient(ctx)
	if err != nil {
		return err
	}
	health := c.Health(ctx)
	fmt.Fprintf(w, "configuration: %s (clusters %v, health %s)\n\n", a.configPath, c.Clusters(), health.Status)
	if !health.Ready() {
		return withCode(exitNo, fmt.Errorf("no cluster is usable (status %s)", health.Status))
	}
	rep := &demoReport{w: w}

	// Keys.
	fmt.Fprintln(w, "Keys (generated inside the HSM; private and secret halves never leave it)")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// One listing tells which demo keys exist; the others are generated.
	existing, err := c.ListKeys(ctx)
	if err != nil {
		return err
	}
	onToken := map[string]bool{}
	for _, k := range existing {
		onToken[k.Label] = true
	}
	keys := map[hsmclient.KeyType]hsmclient.KeyInfo{}
	for _, t := range demoKeys {
		label := demoLabel(t)
		var info hsmclient.KeyInfo
		status := "existing"
		if onToken[label] {
			info, err = c.KeyInfo(ctx, label)
		} else {
			start := time.Now()
			info, err = c.GenerateKey(ctx, label, t)
			status = fmt.Sprintf("generated in %s", time.Since(start).Round(time.Millisecond))
		}
		if err != nil {
			return err
		}
		if info.Type != t {
			return fmt.Errorf("key %q exists but is %s, not %s: delete it (hsmctl keys delete --label %s) or use another token", label, info.Type, t, label)
		}
		keys[t] = info
		fmt.Fprintf(tw, "  %s\t%s\tid %s\t%s\n", label, t, info.ID, status)
	}
	tw.Flush()

	// The credential.
	vc := demoCredential(time.Now())
	sum := sha256.Sum256(vc)
	fmt.Fprintf(w, "\nCredential to sign (%d bytes, SHA-256 %s):\n%s\n", len(vc), hex.EncodeToString(sum[:8])+"...", indent(vc))
	tampered := bytes.Replace(vc, []byte(`"over18": true`), []byte(`"over18": false`), 1)

	tmp, err := os.MkdirTemp("", "hsmctl-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	msgPath, tamperedPath := filepath.Join(tmp, "credential.json"), filepath.Join(tmp, "tampered.json")
	if err := os.WriteFile(msgPath, vc, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(tamperedPath, tampered, 0o600); err != nil {
		return err
	}

	// Signatures.
	fmt.Fprintln(w, "Signatures (verified in Go and by the openssl command line from the exported PEM;")
	fmt.Fprintln(w, "\"tampered\" checks that changing over18 to false breaks the signature)")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  KEY\tALGORITHM\tSIGNATURE\tGO\tOPENSSL\tTAMPERED (GO / OPENSSL)")
	for i, s := range demoSignatures {
		label := demoLabel(s.key)
		signer, err := c.Signer(ctx, label)
		if err != nil {
			return err
		}
		sig, err := signer.SignMessage(ctx, s.alg, vc)
		if err != nil {
			return err
		}
		pub := keys[s.key].Public
		pemBytes, err := hsmclient.MarshalPublicKeyPEM(pub)
		if err != nil {
			return err
		}
		pemPath := filepath.Join(tmp, fmt.Sprintf("%s.pem", label))
		sigPath := filepath.Join(tmp, fmt.Sprintf("sig-%d.bin", i))
		if err := os.WriteFile(pemPath, pemBytes, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(sigPath, sig, 0o600); err != nil {
			return err
		}
		what := fmt.Sprintf("%s %s", label, s.alg)
		goOK := rep.check(hsmclient.VerifyMessage(pub, s.alg, vc, sig) == nil, what+": Go verification")
		osslErr := opensslVerify(ctx, s.alg, pemPath, msgPath, sigPath)
		if errors.Is(osslErr, errOpenSSLMissing) {
			return osslErr
		}
		osslOK := rep.check(osslErr == nil, fmt.Sprintf("%s: openssl verification (%v)", what, osslErr))
		goTamper := rep.check(errors.Is(hsmclient.VerifyMessage(pub, s.alg, tampered, sig), hsmclient.ErrSignatureInvalid), what+": Go accepted a tampered credential")
		osslTamperErr := opensslVerify(ctx, s.alg, pemPath, tamperedPath, sigPath)
		osslTamper := rep.check(errors.Is(osslTamperErr, hsmclient.ErrSignatureInvalid), fmt.Sprintf("%s: openssl did not reject a tampered credential (%v)", what, osslTamperErr))
		tamper := "rejected / rejected"
		if goTamper != "ok" || osslTamper != "ok" {
			tamper = fmt.Sprintf("%s / %s", goTamper, osslTamper)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d bytes\t%s\t%s\t%s\n", label, s.alg, len(sig), goOK, osslOK, tamper)
	}
	tw.Flush()

	// AES-256-GCM.
	aesLabel := demoLabel(hsmclient.KeyAES256)
	aad := []byte("holder=did:example:holder-7f3a9c")
	secret := []byte("PersonaPass wallet backup: the holder's recovery phrase goes here")
	fmt.Fprintf(w, "\nAES-256-GCM with %s (additional data %q)\n", aesLabel, aad)
	sealed, err := c.Encrypt(ctx, aesLabel, secret, aad)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  encrypt %d bytes -> %d bytes (nonce %d from the HSM | ciphertext %d | tag %d)\n",
		len(secret), len(sealed), hsmclient.GCMNonceSize, len(sealed)-hsmclient.GCMNonceSize-hsmclient.GCMTagSize, hsmclient.GCMTagSize)
	opened, err := c.Decrypt(ctx, aesLabel, sealed, aad)
	fmt.Fprintf(w, "  decrypt and compare:          %s\n", rep.check(err == nil && bytes.Equal(opened, secret), fmt.Sprintf("AES-GCM round trip (%v)", err)))
	flipped := bytes.Clone(sealed)
	flipped[hsmclient.GCMNonceSize] ^= 0x01
	_, err = c.Decrypt(ctx, aesLabel, flipped, aad)
	fmt.Fprintf(w, "  one ciphertext bit flipped:   %s (%s)\n", rejected(rep, err, "AES-GCM accepted tampered ciphertext"), errText(err))
	_, err = c.Decrypt(ctx, aesLabel, sealed, []byte("holder=did:example:someone-else"))
	fmt.Fprintf(w, "  wrong additional data:        %s (%s)\n", rejected(rep, err, "AES-GCM accepted wrong additional data"), errText(err))

	fmt.Fprintln(w)
	if len(rep.failures) > 0 {
		for _, f := range rep.failures {
			fmt.Fprintf(w, "FAILED: %s\n", f)
		}
		return withCode(exitNo, fmt.Errorf("demo failed: %d of %d checks failed", len(rep.failures), len(rep.failures)+rep.passed))
	}
	fmt.Fprintf(w, "Demo passed: %d checks. %d signatures over the credential verified by Go and OpenSSL,\n", rep.passed, len(demoSignatures))
	fmt.Fprintln(w, "tampering detected everywhere, AES-GCM round trip and authentication ok.")
	return nil
}

// rejected records that err must be an authentication failure.
func rejected(rep *demoReport, err error, what string) string {
	if rep.check(errors.Is(err, hsmclient.ErrAuthenticationFailed), fmt.Sprintf("%s (%v)", what, err)) == "ok" {
		return "rejected"
	}
	return "FAIL"
}

func errText(err error) string {
	if err == nil {
		return "no error"
	}
	return errorLine(err)
}

// indent prefixes every line of b with four spaces.
func indent(b []byte) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	var out bytes.Buffer
	for _, l := range lines {
		out.WriteString("    ")
		out.Write(l)
		out.WriteByte('\n')
	}
	return out.String()
}
