package cdevents

import (
	"io/fs"

	"github.com/shiploop/shiploop/services/cdevents/schema"
)

// Validator checks CDEvents against the spec's JSON schemas (package
// schema); SchemaError is its error, naming the type and the location.
type (
	Validator   = schema.Validator
	SchemaError = schema.SchemaError
)

// LoadSchemas compiles the schemas under root; see schema.LoadSchemas.
func LoadSchemas(root fs.FS) (*Validator, error) { return schema.LoadSchemas(root) }
