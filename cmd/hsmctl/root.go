package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// extraCommands lets a file add a top-level subcommand without editing this
// one: in its own file, write
//
//	func init() { extraCommands = append(extraCommands, newBenchCmd) }
//
// where newBenchCmd(*app) *cobra.Command builds the command. Commands get the
// shared *app: a.openClient(ctx) opens (once) the configured client, which run
// closes after the command; a.stdout / a.stderr are the output streams.
var extraCommands []func(*app) *cobra.Command

// newRootCmd builds the whole command tree around one app.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "hsmctl",
		Short: "Operate PersonaPass HSM keys through PKCS#11 (hsmclient)",
		Long: `hsmctl manages keys in PKCS#11 HSMs (AWS CloudHSM in production, SoftHSM for
development) and signs, verifies, encrypts and decrypts with them. Private and
secret keys never leave the HSM.

Configuration: --config FILE, else $HSMCTL_CONFIG, else .dev/hsmclient.yaml
(written by "hsmctl dev init"). Exit codes: 0 success, 1 a check said no
(invalid signature, unhealthy cluster, failed demo), 2 an error.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		Args:              noArgs,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE:              func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.PersistentFlags().Var(configValue{a}, "config", "hsmclient YAML configuration `FILE` (default $HSMCTL_CONFIG, then "+defaultConfigPath+")")
	root.PersistentFlags().BoolVarP(&a.verbose, "verbose", "v", false, "log hsmclient events to stderr")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %q)", err, cmd.CommandPath()+" --help")
	})
	root.AddCommand(
		newDevCmd(a),
		newKeysCmd(a),
		newPubkeyCmd(a),
		newSignCmd(a),
		newVerifyCmd(a),
		newEncryptCmd(a),
		newDecryptCmd(a),
		newHealthCmd(a),
		newDemoCmd(a),
	)
	for _, build := range extraCommands {
		root.AddCommand(build(a))
	}
	return root
}

// noArgs rejects positional arguments, naming the first as an unknown command.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command or argument %q for %q (see %q)", args[0], cmd.CommandPath(), cmd.CommandPath()+" --help")
	}
	return nil
}

// groupCmd is a command that only holds subcommands.
func groupCmd(use, short string, children ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(children...)
	return c
}

// requireFlags marks flags as required.
func requireFlags(c *cobra.Command, names ...string) {
	for _, n := range names {
		if err := c.MarkFlagRequired(n); err != nil {
			panic(err) // a typo in a flag name: a programming error
		}
	}
}
