package stacks

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const workflowPath = "../.github/workflows/infrastructure.yml"

// lintWorkflow runs actionlint (as a library, without shellcheck or pyflakes) over one file's content.
func lintWorkflow(t *testing.T, name string, content []byte) []*actionlint.Error {
	t.Helper()
	var out bytes.Buffer
	linter, err := actionlint.NewLinter(&out, &actionlint.LinterOptions{})
	require.NoError(t, err)
	errs, err := linter.Lint(name, content, nil)
	require.NoError(t, err)
	return errs
}

func TestWorkflowPassesActionlint(t *testing.T) {
	content, err := os.ReadFile(workflowPath)
	require.NoError(t, err)
	for _, e := range lintWorkflow(t, filepath.Base(workflowPath), content) {
		t.Errorf("actionlint: %s", e.Error())
	}
}

// The lint is live: a broken workflow (unknown job dependency, bad expression) fails it.
func TestActionlintCatchesABrokenWorkflow(t *testing.T) {
	content, err := os.ReadFile(workflowPath)
	require.NoError(t, err)
	broken := strings.Replace(string(content), "needs: update-prod", "needs: update-staging", 1)
	broken = strings.Replace(broken, "${{ secrets.GITHUB_TOKEN }}", "${{ secrets.GITHUB_TOKEN", 1)
	assert.GreaterOrEqual(t, len(lintWorkflow(t, "broken.yml", []byte(broken))), 2)
}

func TestWorkflowPreviewsOnPRAndUpdatesOnMainInOrder(t *testing.T) {
	content, err := os.ReadFile(workflowPath)
	require.NoError(t, err)
	var wf struct {
		On   map[string]any `yaml:"on"`
		Jobs map[string]struct {
			If       string `yaml:"if"`
			Needs    any    `yaml:"needs"`
			Strategy struct {
				Matrix map[string][]string `yaml:"matrix"`
			} `yaml:"strategy"`
			Steps []struct {
				Uses string            `yaml:"uses"`
				With map[string]string `yaml:"with"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	require.NoError(t, yaml.Unmarshal(content, &wf))
	assert.Contains(t, wf.On, "pull_request")
	assert.Contains(t, wf.On, "push")
	pulumiStep := func(job string) map[string]string {
		for _, s := range wf.Jobs[job].Steps {
			if strings.HasPrefix(s.Uses, "pulumi/actions@") {
				return s.With
			}
		}
		t.Fatalf("job %s has no pulumi/actions step", job)
		return nil
	}
	assert.Equal(t, "preview", pulumiStep("preview")["command"])
	assert.Contains(t, wf.Jobs["preview"].If, "pull_request")
	assert.ElementsMatch(t, []string{"prod", "dr"}, wf.Jobs["preview"].Strategy.Matrix["stack"])
	assert.Equal(t, "up", pulumiStep("update-prod")["command"])
	assert.Equal(t, "up", pulumiStep("update-dr")["command"])
	assert.Contains(t, wf.Jobs["update-prod"].If, "push")
	assert.Equal(t, "update-prod", wf.Jobs["update-dr"].Needs, "dr reads prod's outputs: update prod first")
}
