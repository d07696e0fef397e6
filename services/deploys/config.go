package deploys

import "github.com/shiploop/shiploop/services/deploys/config"

// The deploys part of .shiploop.yml, read by package config.
type (
	Pipeline    = config.Pipeline
	Environment = config.Environment
	Step        = config.Step
	Verify      = config.Verify
	Check       = config.Check
	ConfigError = config.ConfigError
)

// ParseConfig reads the deploys part of a commit's .shiploop.yml; see
// config.Parse.
func ParseConfig(file string, data []byte) (*Pipeline, error) { return config.Parse(file, data) }
