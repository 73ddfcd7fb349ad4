//go:build tools

// Package tools pins modules that the project's packages are about to use, so that
// parallel work on the tree does not race on go.mod. It is removed once every
// dependency is imported by real code.
package tools

import (
	_ "filippo.io/edwards25519"
	_ "github.com/ThalesGroup/crypto11"
	_ "github.com/decred/dcrd/dcrec/secp256k1/v4"
	_ "github.com/miekg/pkcs11"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	_ "github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	_ "github.com/rhysd/actionlint"
	_ "github.com/spf13/cobra"
	_ "github.com/stretchr/testify/require"
	_ "go.uber.org/goleak"
	_ "golang.org/x/crypto/cryptobyte"
	_ "gopkg.in/yaml.v3"
)
