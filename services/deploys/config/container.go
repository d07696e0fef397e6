package config

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Container fields of deploy steps, as the builds parser reads them for
// build steps (services/builds/pipeline): image and pull per step or as the
// pipeline's default, cpus and memory per step. Agents that run steps in
// containers (`--backend docker`) use them; process agents ignore them.

// PullPolicies are the values of pull.
var PullPolicies = []string{"if-not-present", "always", "never"}

// StepImage is the image and pull policy of a deploy step: its own, else
// the pipeline's.
func (c *Pipeline) StepImage(st Step) (image, pull string) {
	image, pull = st.Image, st.Pull
	if image == "" {
		image = c.Image
	}
	if pull == "" {
		pull = c.Pull
	}
	return image, pull
}

// containerField reads image, pull, cpus or memory of a step into st; ok
// is false for any other key.
func (r reader) containerField(st *Step, key string, n *yaml.Node, field string) (ok bool, err error) {
	switch key {
	case "image":
		st.Image, err = r.image(n, field)
	case "pull":
		st.Pull, err = r.pull(n, field)
	case "cpus":
		var s string
		if s, err = r.str(n, field); err == nil {
			v, perr := strconv.ParseFloat(s, 64)
			if perr != nil || v < 0 || v > 1024 {
				return true, r.errf(resolve(n), field, "expected a number of CPUs from 0 to 1024, got %q", s)
			}
			st.CPUs = v
		}
	case "memory":
		var s string
		if s, err = r.str(n, field); err == nil {
			b, ok := parseMemory(s)
			if !ok {
				return true, r.errf(resolve(n), field, "invalid memory size %q: use bytes or a number with k, m or g (\"512m\"), at least 4m", s)
			}
			st.Memory = b
		}
	default:
		return false, nil
	}
	return true, err
}

func (r reader) image(n *yaml.Node, field string) (string, error) {
	s, err := r.str(n, field)
	if err == nil && strings.TrimSpace(s) == "" {
		err = r.errf(resolve(n), field, "must not be empty")
	}
	return s, err
}

func (r reader) pull(n *yaml.Node, field string) (string, error) {
	s, err := r.str(n, field)
	if err != nil {
		return "", err
	}
	for _, p := range PullPolicies {
		if s == p {
			return s, nil
		}
	}
	return "", r.errf(resolve(n), field, "expected one of %s, got %q", strings.Join(PullPolicies, ", "), s)
}

// parseMemory reads "512m", "1g", "1.5G", "2048k" or bytes; 0 is no limit,
// anything else below 4 MiB is refused (as the builds parser does).
func parseMemory(s string) (int64, bool) {
	t := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "b")
	mult := 1.0
	if t != "" {
		switch t[len(t)-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1<<50 {
		return 0, false
	}
	b := int64(v * mult)
	if b != 0 && b < 4<<20 {
		return 0, false
	}
	return b, true
}
