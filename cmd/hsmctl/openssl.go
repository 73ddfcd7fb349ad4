package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/personapass/hsm/hsmclient"
)

// errOpenSSLMissing reports that the openssl command is not installed.
var errOpenSSLMissing = errors.New("the openssl command is not installed: run scripts/deps.sh")

// opensslVerifyArgs returns the openssl command line that verifies sigPath over
// msgPath with the PEM public key in pemPath.
func opensslVerifyArgs(alg hsmclient.Algorithm, pemPath, msgPath, sigPath string) []string {
	switch alg {
	case hsmclient.AlgEd25519:
		// Ed25519 signs the message itself: pkeyutl with -rawin.
		return []string{"pkeyutl", "-verify", "-pubin", "-inkey", pemPath, "-rawin", "-in", msgPath, "-sigfile", sigPath}
	case hsmclient.AlgRSAPSSSHA256:
		return []string{"dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
			"-sigopt", "rsa_mgf1_md:sha256", "-verify", pemPath, "-signature", sigPath, msgPath}
	case hsmclient.AlgECDSASHA384:
		return []string{"dgst", "-sha384", "-verify", pemPath, "-signature", sigPath, msgPath}
	}
	return []string{"dgst", "-sha256", "-verify", pemPath, "-signature", sigPath, msgPath}
}

// opensslVerify runs the openssl command line on the files. It returns nil
// when openssl says the signature is valid, hsmclient.ErrSignatureInvalid when
// it says invalid, and another error when openssl could not run.
func opensslVerify(ctx context.Context, alg hsmclient.Algorithm, pemPath, msgPath, sigPath string) error {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		return errOpenSSLMissing
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, opensslVerifyArgs(alg, pemPath, msgPath, sigPath)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	text := out.String()
	switch {
	case err == nil && strings.Contains(text, "Verified"):
		return nil
	case strings.Contains(text, "Verification failure") || strings.Contains(text, "Verification Failure"):
		return hsmclient.ErrSignatureInvalid
	case err == nil:
		return fmt.Errorf("openssl gave no verdict: %s", oneLine(text))
	}
	return fmt.Errorf("openssl %s: %v: %s", opensslVerifyArgs(alg, pemPath, msgPath, sigPath)[0], err, oneLine(text))
}

// oneLine joins the lines of s with "; ".
func oneLine(s string) string { return errorLineString(strings.TrimSpace(s)) }
