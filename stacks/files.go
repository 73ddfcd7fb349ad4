package stacks

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
)

// StackFiles are a stack's Pulumi.yaml and Pulumi.<stack>.yaml, loaded with the Pulumi SDK's own
// loaders.
type StackFiles struct {
	Project *workspace.Project
	Stack   *workspace.ProjectStack
}

// LoadStackFiles loads dir/Pulumi.yaml and dir/Pulumi.<stack>.yaml.
func LoadStackFiles(dir, stack string) (*StackFiles, error) {
	proj, err := workspace.LoadProject(filepath.Join(dir, "Pulumi.yaml"))
	if err != nil {
		return nil, fmt.Errorf("loading Pulumi.yaml: %w", err)
	}
	sink := diag.DefaultSink(os.Stderr, os.Stderr, diag.FormatOptions{Color: colors.Never})
	ps, err := workspace.LoadProjectStack(sink, proj, filepath.Join(dir, "Pulumi."+stack+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("loading Pulumi.%s.yaml: %w", stack, err)
	}
	return &StackFiles{Project: proj, Stack: ps}, nil
}

// Config returns the stack's configuration as the engine hands it to the program (the
// PULUMI_CONFIG map): stack values over the project's defaults, full keys, objects as JSON.
// A project key without a default that the stack does not set is an error naming it.
func (f *StackFiles) Config() (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for name, typ := range f.Project.Config {
		key := FullKey(name)
		if typ.Default == nil {
			continue
		}
		if s, ok := typ.Default.(string); ok {
			out[key] = s
			continue
		}
		b, err := json.Marshal(typ.Default)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: default: %w", key, err))
		}
		out[key] = string(b)
	}
	for k, v := range f.Stack.Config {
		if v.Secure() {
			errs = append(errs, fmt.Errorf("%s: secrets cannot be read offline", k))
			continue
		}
		s, err := v.Value(config.NopDecrypter)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
		out[k.String()] = s
	}
	for name := range f.Project.Config {
		if _, ok := out[FullKey(name)]; !ok {
			errs = append(errs, fmt.Errorf("%s: required by Pulumi.yaml but not set in the stack file", FullKey(name)))
		}
	}
	return out, errors.Join(errs...)
}
