package pipeline_test

import (
	"errors"
	"fmt"

	"github.com/shiploop/shiploop/services/builds/pipeline"
)

func ExampleParse() {
	cfg, err := pipeline.Parse(".shiploop.yml", []byte(`
steps:
  - name: test
    commands: go test ./...
    depends_on: [build]
  - name: build
    commands: [go build ./...]
  - name: release
    commands: [goreleaser]
    depends_on: [test]
    when: {event: tag, tag: ["v*"]}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range cfg.Selected(pipeline.Context{Event: "push", Branch: "main"}) {
		fmt.Println(s.Name, s.Commands)
	}
	// Output:
	// build [go build ./...]
	// test [go test ./...]
}

func ExampleParse_errors() {
	_, err := pipeline.Parse(".shiploop.yml", []byte(`
steps:
  - name: lint
    comands: [golangci-lint run]
  - name: build
    commands: [go build ./...]
    depends_on: [lnt]
`))
	var verr *pipeline.ValidationError
	if errors.As(err, &verr) {
		for _, fe := range verr.Errors {
			fmt.Println(fe)
		}
	}
	// Output:
	// .shiploop.yml:4:5: steps[0].comands: unknown field (did you mean "commands"?)
	// .shiploop.yml:7:18: steps[1].depends_on[0]: unknown step "lnt" (did you mean "lint"?)
}
