// Command personapass-hsm is the Pulumi program of the PersonaPass HSM platform; Pulumi.yaml's
// runtime go builds and runs it. The stack's role (primary or dr) comes from its config.
package main

import (
	"github.com/personapass/hsm/stacks"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func main() {
	pulumi.Run(stacks.Program)
}
