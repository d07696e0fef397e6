package pipeline

import (
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// producesFields are the keys of a step's produces.
var producesFields = []string{"image"}

// imageRefPattern is a local image reference as `docker build -t` takes
// it: lower-case name components separated by / with an optional :tag.
var imageRefPattern = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`)

// produces decodes produces: {image: NAME} or {image: [A, B]} of a build
// step: the images the step builds, whose IDs the agent reports after it.
func (d *decoder) produces(n *yaml.Node, field string) []string {
	if !strings.HasPrefix(field, "steps") {
		d.errAt(d.resolve(n), field, "produces is only for build steps (steps:): deploys get the images a build produced")
		return nil
	}
	var out []string
	present := d.object(n, field, producesFields, func(_ string, v *yaml.Node, f string) {
		if r := d.resolve(v); r.Kind == yaml.SequenceNode && len(r.Content) == 0 {
			d.errAt(r, f, "must name at least one image")
		}
		out = d.stringList(v, f, true, func(s string) string {
			if len(s) > 255 || !imageRefPattern.MatchString(s) {
				return "expected an image name as docker build -t takes it (lower-case, e.g. app or acme/app:ci)"
			}
			return ""
		})
	})
	d.require(n, field, present, "image")
	return out
}
