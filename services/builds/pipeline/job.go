// What a step sees when it runs: its environment variables and secrets.

package pipeline

import (
	"maps"
	"slices"
)

// StepEnv returns the environment variables of step s in one job, merged
// from the least to the most specific, later ones winning: the pipeline's
// Env, the matrix combination (nil outside a matrix or for deploys), the
// deploy environment's Variables (nil for build and test steps), and the
// step's own Env. Secrets are not included; see StepSecrets.
func (c *Config) StepEnv(s Step, combo map[string]string, env *Environment) map[string]string {
	out := maps.Clone(c.Env)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, combo)
	if env != nil {
		maps.Copy(out, env.Variables)
	}
	maps.Copy(out, s.Env)
	return out
}

// StepSecrets returns the names of the secrets exposed to step s, sorted:
// the pipeline's, the deploy environment's (env may be nil) and the
// step's. Each is set as an environment variable of the same name, which
// wins over StepEnv, and its value is masked in logs.
func (c *Config) StepSecrets(s Step, env *Environment) []string {
	set := map[string]bool{}
	for _, n := range c.Secrets {
		set[n] = true
	}
	if env != nil {
		for _, n := range env.Secrets {
			set[n] = true
		}
	}
	for _, n := range s.Secrets {
		set[n] = true
	}
	return slices.Sorted(maps.Keys(set))
}
