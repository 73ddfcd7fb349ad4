package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/personapass/hsm/hsmclient"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWorkflow drives every subcommand against a real SoftHSM token: dev init,
// a key of every type, listing, public keys, a signature with every algorithm
// that fits each key (checked by hsmctl verify, by Go from the PEM and by the
// openssl command line), tampering, stdin/stdout, size limits, AES-GCM,
// deletion and health.
func TestWorkflow(t *testing.T) {
	d := newDevDir(t)
	work := t.TempDir()
	ctx := context.Background()

	// Generate a key of every type.
	for _, kt := range hsmclient.KeyTypes() {
		out := d.must(t, nil, "keys", "generate", "--label", "k-"+string(kt), "--type", string(kt))
		require.Contains(t, out, string(kt))
	}

	// keys list --json lists them all with their types.
	var listed []hsmclient.KeyInfo
	require.NoError(t, json.Unmarshal([]byte(d.must(t, nil, "keys", "list", "--json")), &listed))
	types := map[string]hsmclient.KeyType{}
	for _, k := range listed {
		types[k.Label] = k.Type
		assert.Len(t, k.ID, 32, "CKA_ID hex of %s", k.Label)
	}
	for _, kt := range hsmclient.KeyTypes() {
		assert.Equal(t, kt, types["k-"+string(kt)])
	}
	text := d.must(t, nil, "keys", "list")
	assert.Contains(t, text, "LABEL")
	assert.Contains(t, text, "k-ed25519")

	msg := []byte(`{"type":["VerifiableCredential"],"credentialSubject":{"id":"did:example:123","over18":true}}`)
	tampered := bytes.Replace(msg, []byte("true"), []byte("fals"), 1)
	msgPath := writeFile(t, work, "msg.json", msg)
	tamperedPath := writeFile(t, work, "tampered.json", tampered)

	for _, kt := range hsmclient.KeyTypes() {
		label := "k-" + string(kt)
		if kt == hsmclient.KeyAES256 {
			continue
		}
		pemBytes := []byte(d.must(t, nil, "pubkey", "--label", label))
		pub := parsePublicKeyPEM(t, pemBytes)
		pemPath := writeFile(t, work, label+".pem", pemBytes)

		// Without --alg the key type's default is used.
		def, err := hsmclient.DefaultAlgorithm(kt)
		require.NoError(t, err)
		sigPath := filepath.Join(work, label+".default.sig")
		d.must(t, nil, "sign", "--label", label, "--in", msgPath, "--out", sigPath)
		sig, err := os.ReadFile(sigPath)
		require.NoError(t, err)
		require.NoError(t, hsmclient.VerifyMessage(pub, def, msg, sig), "%s default %s", label, def)

		for _, alg := range hsmclient.AlgorithmsFor(kt) {
			t.Run(label+"/"+string(alg), func(t *testing.T) {
				sigPath := filepath.Join(work, label+"."+string(alg)+".sig")
				d.must(t, nil, "sign", "--label", label, "--alg", string(alg), "--in", msgPath, "--out", sigPath)
				sig, err := os.ReadFile(sigPath)
				require.NoError(t, err)

				// Go, from the exported PEM.
				require.NoError(t, hsmclient.VerifyMessage(pub, alg, msg, sig))
				require.ErrorIs(t, hsmclient.VerifyMessage(pub, alg, tampered, sig), hsmclient.ErrSignatureInvalid)
				// The openssl command line, from the exported PEM.
				require.NoError(t, opensslVerify(ctx, alg, pemPath, msgPath, sigPath), "openssl %v", opensslVerifyArgs(alg, pemPath, msgPath, sigPath))
				require.ErrorIs(t, opensslVerify(ctx, alg, pemPath, tamperedPath, sigPath), hsmclient.ErrSignatureInvalid)
				// hsmctl verify: 0 valid, 1 invalid.
				out := d.must(t, nil, "verify", "--label", label, "--alg", string(alg), "--in", msgPath, "--sig", sigPath)
				assert.Contains(t, out, "signature valid")
				r := d.run(t, nil, "verify", "--label", label, "--alg", string(alg), "--in", tamperedPath, "--sig", sigPath)
				requireOneLineError(t, r, exitNo, "signature invalid")
				assert.Empty(t, r.stdout)
				// A corrupted signature is invalid too, not an error.
				bad := bytes.Clone(sig)
				bad[len(bad)/2] ^= 0x40
				badPath := writeFile(t, work, label+"."+string(alg)+".bad", bad)
				r = d.run(t, nil, "verify", "--label", label, "--alg", string(alg), "--in", msgPath, "--sig", badPath)
				requireOneLineError(t, r, exitNo, "signature invalid")

				// stdin and stdout.
				r = d.run(t, msg, "sign", "--label", label, "--alg", string(alg), "--in", "-", "--out", "-")
				require.Equal(t, 0, r.code, "%s", r)
				require.NoError(t, hsmclient.VerifyMessage(pub, alg, msg, []byte(r.stdout)))
				d.must(t, msg, "verify", "--label", label, "--alg", string(alg), "--in", "-", "--sig", sigPath)
				d.must(t, sig, "verify", "--label", label, "--alg", string(alg), "--in", msgPath, "--sig", "-")
			})
		}
	}

	// Hashed algorithms take input of any size; Ed25519 stops at 16 KiB and
	// writes nothing.
	big := bytes.Repeat([]byte("0123456789abcdef"), 64*1024) // 1 MiB
	bigPath := writeFile(t, work, "big.bin", big)
	bigSig := filepath.Join(work, "big.sig")
	d.must(t, nil, "sign", "--label", "k-ec-p384", "--in", bigPath, "--out", bigSig)
	sig, err := os.ReadFile(bigSig)
	require.NoError(t, err)
	pub := parsePublicKeyPEM(t, []byte(d.must(t, nil, "pubkey", "--label", "k-ec-p384")))
	require.NoError(t, hsmclient.VerifyMessage(pub, hsmclient.AlgECDSASHA384, big, sig))
	d.must(t, nil, "verify", "--label", "k-ec-p384", "--in", bigPath, "--sig", bigSig)
	edOut := filepath.Join(work, "ed-big.sig")
	r := d.run(t, nil, "sign", "--label", "k-ed25519", "--in", bigPath, "--out", edOut)
	requireOneLineError(t, r, exitError, "larger than 16384 bytes")
	require.NoFileExists(t, edOut)
	exact := writeFile(t, work, "16k.bin", big[:maxRawMessage])
	d.must(t, nil, "sign", "--label", "k-ed25519", "--in", exact, "--out", edOut)

	// AES-256-GCM round trip, with and without additional data.
	secret := []byte("wallet recovery phrase: correct horse battery staple")
	secretPath := writeFile(t, work, "secret.txt", secret)
	sealedPath := filepath.Join(work, "secret.bin")
	d.must(t, nil, "encrypt", "--label", "k-aes-256", "--in", secretPath, "--out", sealedPath, "--aad", "holder-42")
	sealed, err := os.ReadFile(sealedPath)
	require.NoError(t, err)
	require.Len(t, sealed, hsmclient.GCMNonceSize+len(secret)+hsmclient.GCMTagSize)
	require.NotContains(t, string(sealed), "horse")
	openedPath := filepath.Join(work, "opened.txt")
	d.must(t, nil, "decrypt", "--label", "k-aes-256", "--in", sealedPath, "--out", openedPath, "--aad", "holder-42")
	opened, err := os.ReadFile(openedPath)
	require.NoError(t, err)
	require.Equal(t, secret, opened)
	// Through stdin and stdout, without additional data.
	r = d.run(t, secret, "encrypt", "--label", "k-aes-256")
	require.Equal(t, 0, r.code, "%s", r)
	require.Equal(t, string(secret), d.must(t, []byte(r.stdout), "decrypt", "--label", "k-aes-256"))

	// Tampered ciphertext, wrong and missing additional data: one opaque
	// error, and the existing output file is left alone.
	require.NoError(t, os.WriteFile(openedPath, []byte("previous content"), 0o600))
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	flippedPath := writeFile(t, work, "flipped.bin", flipped)
	for _, args := range [][]string{
		{"--in", flippedPath, "--aad", "holder-42"},
		{"--in", sealedPath, "--aad", "holder-43"},
		{"--in", sealedPath},
	} {
		r := d.run(t, nil, append([]string{"decrypt", "--label", "k-aes-256", "--out", openedPath}, args...)...)
		requireOneLineError(t, r, exitError, "message authentication failed")
		content, err := os.ReadFile(openedPath)
		require.NoError(t, err)
		require.Equal(t, "previous content", string(content))
	}
	tooBig := writeFile(t, work, "too-big.txt", big[:hsmclient.MaxGCMPlaintext+1])
	requireOneLineError(t, d.run(t, nil, "encrypt", "--label", "k-aes-256", "--in", tooBig, "--out", filepath.Join(work, "x")), exitError, "larger than 16384 bytes")
	require.NoFileExists(t, filepath.Join(work, "x"))

	// keys delete removes both halves; the label is then unknown.
	out := d.must(t, nil, "keys", "delete", "--label", "k-ec-p256")
	assert.Contains(t, out, "deleted")
	assert.NotContains(t, d.must(t, nil, "keys", "list"), "k-ec-p256 ")
	requireOneLineError(t, d.run(t, nil, "keys", "delete", "--label", "k-ec-p256"), exitError, "key not found")
	requireOneLineError(t, d.run(t, nil, "pubkey", "--label", "k-ec-p256"), exitError, "key not found")

	// health --json.
	var report healthOutput
	require.NoError(t, json.Unmarshal([]byte(d.must(t, nil, "health", "--json")), &report))
	assert.Equal(t, "ok", report.Status)
	require.Len(t, report.Clusters, 1)
	assert.Equal(t, "primary", report.Clusters[0].Name)
	assert.Equal(t, hsmclient.StateUp, report.Clusters[0].State)
	assert.Contains(t, d.must(t, nil, "health"), "status: ok")
}

// TestDevInitIsIdempotent: a second dev init refuses to overwrite the
// configuration, --force rewrites it but keeps the token, its PINs and keys.
func TestDevInitIsIdempotent(t *testing.T) {
	d := newDevDir(t)
	d.must(t, nil, "keys", "generate", "--label", "keep-me", "--type", "ed25519")

	r := hsmctl(t, nil, "dev", "init", "--dir", d.dir)
	requireOneLineError(t, r, exitError, "--force")

	mustRun(t, nil, "dev", "init", "--dir", d.dir, "--force")
	for i, name := range []string{"so.pin", "user.pin"} {
		pin, err := os.ReadFile(filepath.Join(d.dir, "pins", name))
		require.NoError(t, err)
		require.Equal(t, d.pins[i], strings.TrimSpace(string(pin)), "%s changed", name)
	}
	assert.Contains(t, d.must(t, nil, "keys", "list"), "keep-me")

	// A token without its PIN files is not re-initialized: that would destroy keys.
	require.NoError(t, os.Remove(filepath.Join(d.dir, "pins", "user.pin")))
	r = hsmctl(t, nil, "dev", "init", "--dir", d.dir, "--force")
	requireOneLineError(t, r, exitError, "PIN file")
	require.DirExists(t, filepath.Join(d.dir, "tokens"))
}

// TestConfigDiscovery: --config, then $HSMCTL_CONFIG, then .dev/hsmclient.yaml.
func TestConfigDiscovery(t *testing.T) {
	t.Setenv(configEnv, "")
	t.Chdir(t.TempDir())
	r := hsmctl(t, nil, "keys", "list")
	requireOneLineError(t, r, exitError, "no configuration")
	assert.Contains(t, r.stderr, "dev init")

	out := mustRun(t, nil, "dev", "init") // --dir defaults to .dev
	assert.Contains(t, out, filepath.Join(".dev", "hsmclient.yaml"))
	assert.Equal(t, "no keys\n", mustRun(t, nil, "keys", "list"))
	mustRun(t, nil, "keys", "generate", "--label", "in-dot-dev", "--type", "ec-p256")

	other := newDevDir(t)
	t.Setenv(configEnv, other.config)
	assert.Equal(t, "no keys\n", mustRun(t, nil, "keys", "list"), "HSMCTL_CONFIG wins over .dev")
	assert.Contains(t, mustRun(t, nil, "--config", ".dev/hsmclient.yaml", "keys", "list"), "in-dot-dev", "--config wins over HSMCTL_CONFIG")

	// An explicitly empty --config is an error, not a fall back to
	// HSMCTL_CONFIG or .dev.
	requireOneLineError(t, hsmctl(t, nil, "--config", "", "keys", "list"), exitError, "--config is empty")
	requireOneLineError(t, hsmctl(t, nil, "--config=", "keys", "list"), exitError, "--config is empty")
	requireOneLineError(t, hsmctl(t, nil, "keys", "list", "--config", ""), exitError, "--config is empty")

	t.Setenv(configEnv, filepath.Join(t.TempDir(), "missing.yaml"))
	requireOneLineError(t, hsmctl(t, nil, "keys", "list"), exitError, "does not exist")
}

// TestErrors: every mistake is one line on stderr and a non-zero exit code,
// without a usage dump and without a PIN.
func TestErrors(t *testing.T) {
	d := newDevDir(t)
	d.must(t, nil, "keys", "generate", "--label", "ec", "--type", "ec-p256")
	d.must(t, nil, "keys", "generate", "--label", "aes", "--type", "aes-256")
	work := t.TempDir()
	msg := writeFile(t, work, "msg", []byte("hello"))
	empty := writeFile(t, work, "empty", nil)
	sig := filepath.Join(work, "sig")
	d.must(t, nil, "sign", "--label", "ec", "--in", msg, "--out", sig)

	unknownKey := writeFile(t, work, "unknown-key.yaml", []byte(
		"clusters:\n  - name: primary\n    module: /x.so\n    token_label: t\n    pin_file: /p\n    pin: \"1234\"\n"))
	wrongPIN := writeFile(t, work, "wrong.pin", []byte("not-the-pin\n"))
	cfg, err := os.ReadFile(d.config)
	require.NoError(t, err)
	wrongPINConfig := writeFile(t, work, "wrong-pin.yaml", []byte(strings.Replace(string(cfg),
		filepath.Join(d.dir, "pins", "user.pin"), wrongPIN, 1)))
	require.Contains(t, string(cfg), filepath.Join(d.dir, "pins", "user.pin"))

	cases := []struct {
		name     string
		args     []string // after --config d.config unless they start with --config
		code     int
		contains string
	}{
		{"unknown flag", []string{"keys", "list", "--bogus"}, exitError, "unknown flag: --bogus"},
		{"unknown global flag", []string{"--bogus", "keys", "list"}, exitError, "unknown flag: --bogus"},
		{"unknown command", []string{"keyz"}, exitError, `unknown command or argument "keyz"`},
		{"unknown subcommand", []string{"keys", "rotate"}, exitError, `unknown command or argument "rotate"`},
		{"stray argument", []string{"sign", "--label", "ec", "file.txt"}, exitError, `"file.txt"`},
		{"missing --label on sign", []string{"sign", "--in", msg}, exitError, `"label"`},
		{"missing --label on generate", []string{"keys", "generate", "--type", "ec-p256"}, exitError, `"label"`},
		{"missing --sig", []string{"verify", "--label", "ec", "--in", msg}, exitError, `"sig"`},
		{"unknown key type", []string{"keys", "generate", "--label", "x", "--type", "rsa-1024"}, exitError, `unknown key type "rsa-1024"`},
		{"duplicate label", []string{"keys", "generate", "--label", "ec", "--type", "ed25519"}, exitError, "already in use"},
		{"unknown key label on sign", []string{"sign", "--label", "nope", "--in", msg, "--out", filepath.Join(work, "o")}, exitError, "key not found"},
		{"unknown key label on verify", []string{"verify", "--label", "nope", "--in", msg, "--sig", sig}, exitError, "key not found"},
		{"unknown key label on encrypt", []string{"encrypt", "--label", "nope", "--in", msg}, exitError, "key not found"},
		{"unknown algorithm", []string{"sign", "--label", "ec", "--alg", "ecdsa-md5", "--in", msg}, exitError, `unknown algorithm "ecdsa-md5"`},
		{"wrong --alg on sign", []string{"sign", "--label", "ec", "--alg", "rsa-pss-sha256", "--in", msg}, exitError, "does not fit ec-p256"},
		{"wrong --alg on verify", []string{"verify", "--label", "ec", "--alg", "ed25519", "--in", msg, "--sig", sig}, exitError, "does not fit ec-p256"},
		{"sign with an AES key", []string{"sign", "--label", "aes", "--in", msg}, exitError, "wrong key type"},
		{"pubkey of an AES key", []string{"pubkey", "--label", "aes"}, exitError, "secret key"},
		{"encrypt with an EC key", []string{"encrypt", "--label", "ec", "--in", msg}, exitError, "wrong key type"},
		{"empty input", []string{"sign", "--label", "ec", "--in", empty}, exitError, "is empty"},
		{"missing input file", []string{"sign", "--label", "ec", "--in", filepath.Join(work, "nope")}, exitError, "no such file"},
		{"both from stdin", []string{"verify", "--label", "ec", "--sig", "-"}, exitError, "standard input"},
		{"missing config file", []string{"--config", filepath.Join(work, "missing.yaml"), "keys", "list"}, exitError, "does not exist"},
		{"unknown YAML key", []string{"--config", unknownKey, "keys", "list"}, exitError, "field pin not found"},
		{"unknown YAML key on health", []string{"--config", unknownKey, "health"}, exitError, "field pin not found"},
		{"wrong PIN", []string{"--config", wrongPINConfig, "keys", "list"}, exitError, "PIN incorrect"},
		{"wrong PIN on health", []string{"--config", wrongPINConfig, "health", "--json"}, exitNo, "no cluster is usable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args[0] != "--config" {
				args = append([]string{"--config", d.config}, args...)
			}
			r := hsmctl(t, nil, args...)
			d.requireNoPIN(t, r)
			assert.NotContains(t, r.stdout+r.stderr, "not-the-pin")
			requireOneLineError(t, r, tc.code, tc.contains)
			if tc.code == exitError {
				assert.Empty(t, r.stdout)
			}
		})
	}

	// health --json still prints a report when no cluster is usable.
	r := hsmctl(t, nil, "--config", wrongPINConfig, "health", "--json")
	var report healthOutput
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &report))
	assert.Equal(t, "unavailable", report.Status)
	assert.Contains(t, report.Error, "PIN incorrect")
}

// TestHelp: help goes to stdout with exit code 0.
func TestHelp(t *testing.T) {
	t.Setenv(configEnv, "")
	for _, args := range [][]string{{}, {"--help"}, {"keys"}, {"sign", "--help"}, {"dev", "init", "--help"}} {
		out := mustRun(t, nil, args...)
		assert.Contains(t, out, "Usage:", "%v", args)
	}
	out := mustRun(t, nil, "--help")
	for _, sub := range []string{"dev", "keys", "pubkey", "sign", "verify", "encrypt", "decrypt", "health", "demo"} {
		assert.Contains(t, out, "\n  "+sub+" ", "help lists %s", sub)
	}
}

// TestExtraCommands: files can add subcommands (bench.go does) without
// editing root.go, and they share the app.
func TestExtraCommands(t *testing.T) {
	saved := extraCommands
	t.Cleanup(func() { extraCommands = saved })
	extraCommands = append(extraCommands, func(a *app) *cobra.Command {
		return &cobra.Command{Use: "extra", Args: noArgs, RunE: func(*cobra.Command, []string) error {
			_, err := a.openClient(context.Background())
			return err
		}}
	})
	t.Setenv(configEnv, "")
	t.Chdir(t.TempDir())
	r := hsmctl(t, nil, "extra")
	requireOneLineError(t, r, exitError, "no configuration")
	require.True(t, errors.Is(errNoConfig, errNoConfig))
}

// TestErrorLine: joined and nested library errors become one line.
func TestErrorLine(t *testing.T) {
	err := errors.Join(errors.New("hsmclient: a: hsmclient: b:"), errors.New("c"), errors.New("d"))
	assert.Equal(t, "a: b: c; d", errorLine(err))
}
