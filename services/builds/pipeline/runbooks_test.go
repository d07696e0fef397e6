package pipeline

import (
	"strings"
	"testing"
)

func TestParseRunbooks(t *testing.T) {
	base := "steps: [{name: b, commands: [make]}]\nenvironments: [{name: production, steps: [{name: d, commands: [echo]}]}, {name: staging, steps: [{name: d, commands: [echo]}]}]\n"
	ok := base + `runbooks:
  - name: restart
    environment: production
    options:
      - {name: service, type: enum, values: [web, worker], required: true}
      - {name: drain, type: bool, default: false}
    steps: [{name: restart, commands: ['systemctl restart "$OPTION_SERVICE"']}]
  - {name: refresh-staging, kind: data, from: production, to: staging, steps: [{name: copy, commands: [./copy.sh]}]}
`
	if _, err := Parse(".shiploop.yml", []byte(ok)); err != nil {
		t.Fatalf("valid runbooks refused: %v", err)
	}
	for bad, want := range map[string]string{
		"runbooks: [{name: r, steps: [{name: s, commands: [x]}], colour: red}]":                       "unknown field",
		"runbooks: [{name: r, options: [{name: Svc}], steps: [{name: s, commands: [x]}]}]":            "invalid option name",
		"runbooks: [{name: r, options: [{name: s, type: enum}], steps: [{name: s, commands: [x]}]}]":  "an enum option needs values",
		"runbooks: [{name: r, kind: data, from: production, steps: [{name: s, commands: [x]}]}]":      "needs from and to",
		"runbooks: [{name: r, options: [{name: s, type: float}], steps: [{name: s, commands: [x]}]}]": "unknown option type",
		"runbooks: [{name: r}]": "steps",
	} {
		_, err := Parse(".shiploop.yml", []byte(base+bad))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", bad, err, want)
		}
	}
}
