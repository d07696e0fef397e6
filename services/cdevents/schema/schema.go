// Package schema checks CDEvents against the spec's JSON schemas, each error
// naming the event type and the failing location. It is apart from the
// cdevents service so that it can be fuzzed without linking the service.
package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var printer = message.NewPrinter(language.English)

// Validator checks CDEvents v0.5.1 JSON against the spec's JSON Schemas
// (one per type, plus custom/schema.json for dev.cdeventsx.* events).
type Validator struct {
	byType map[string]*jsonschema.Schema // "dev.cdevents.service.deployed" -> schema
	custom *jsonschema.Schema
}

// SchemaError is a CDEvent that failed its schema.
type SchemaError struct {
	Type string
	Err  error
}

func (e *SchemaError) Error() string {
	if e.Type == "" {
		return fmt.Sprintf("cdevent: %v", e.Err)
	}
	return fmt.Sprintf("cdevent %s: %v", e.Type, e.Err)
}

func (e *SchemaError) Unwrap() error { return e.Err }

// LoadSchemas compiles the schemas in root: root/schemas/*.json (with
// root/schemas/links/*.json) and root/custom/schema.json, the layout of the
// cdevents/spec repository at tag v0.5.1.
func LoadSchemas(root fs.FS) (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat() // date-time, uri-reference: the schemas mean them
	type loaded struct{ id, typ string }
	var tops []loaded
	var customID string
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".json") {
			return nil
		}
		inSchemas := strings.HasPrefix(p, "schemas/")
		isCustom := p == "custom/schema.json"
		if !inSchemas && !isCustom {
			return nil
		}
		raw, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		var head struct {
			ID         string `json:"$id"`
			Properties struct {
				Context struct {
					Properties struct {
						Type struct {
							Enum []string `json:"enum"`
						} `json:"type"`
					} `json:"properties"`
				} `json:"context"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if head.ID == "" {
			return fmt.Errorf("%s: schema without $id", p)
		}
		if err := c.AddResource(head.ID, doc); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		switch {
		case isCustom:
			customID = head.ID
		case path.Dir(p) == "schemas" && len(head.Properties.Context.Properties.Type.Enum) > 0:
			tops = append(tops, loaded{head.ID, head.Properties.Context.Properties.Type.Enum[0]})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cdevents: loading schemas: %w", err)
	}
	if len(tops) == 0 {
		return nil, errors.New("cdevents: loading schemas: no schemas/*.json with a context.type found")
	}
	v := &Validator{byType: map[string]*jsonschema.Schema{}}
	for _, t := range tops {
		s, err := c.Compile(t.id)
		if err != nil {
			return nil, fmt.Errorf("cdevents: compiling %s: %w", t.id, err)
		}
		v.byType[typeKey(t.typ)] = s
	}
	if customID != "" {
		s, err := c.Compile(customID)
		if err != nil {
			return nil, fmt.Errorf("cdevents: compiling %s: %w", customID, err)
		}
		v.custom = s
	}
	return v, nil
}

// typeKey drops the version: "dev.cdevents.service.deployed.0.3.0" ->
// "dev.cdevents.service.deployed". Consumers route on subject and
// predicate and treat the version as data.
func typeKey(t string) string {
	parts := strings.Split(t, ".")
	if len(parts) > 3 {
		parts = parts[:len(parts)-3]
	}
	return strings.Join(parts, ".")
}

// Types lists the event types (without version) the validator knows.
func (v *Validator) Types() []string {
	out := make([]string, 0, len(v.byType))
	for t := range v.byType {
		out = append(out, t)
	}
	return out
}

// Validate checks one CDEvent. The error is a *SchemaError naming the type
// and the failing location.
func (v *Validator) Validate(raw []byte) error {
	var head struct {
		Context struct {
			Type string `json:"type"`
		} `json:"context"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return &SchemaError{Err: fmt.Errorf("not JSON: %w", err)}
	}
	typ := head.Context.Type
	if typ == "" {
		return &SchemaError{Err: errors.New("context.type is missing")}
	}
	var s *jsonschema.Schema
	switch {
	case strings.HasPrefix(typ, "dev.cdeventsx."):
		s = v.custom
	default:
		s = v.byType[typeKey(typ)]
	}
	if s == nil {
		return &SchemaError{Type: typ, Err: errors.New("unknown CDEvents type (this build knows v0.5.1)")}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return &SchemaError{Type: typ, Err: fmt.Errorf("not JSON: %w", err)}
	}
	if err := s.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return &SchemaError{Type: typ, Err: errors.New(strings.TrimSpace(flatten(ve)))}
		}
		return &SchemaError{Type: typ, Err: err}
	}
	return nil
}

// flatten renders the innermost causes of a validation error on one line
// each, "at '/subject/content': missing property 'environment'".
func flatten(ve *jsonschema.ValidationError) string {
	if len(ve.Causes) == 0 {
		return fmt.Sprintf("at '/%s': %s", strings.Join(ve.InstanceLocation, "/"), ve.ErrorKind.LocalizedString(printer))
	}
	var parts []string
	for _, c := range ve.Causes {
		parts = append(parts, flatten(c))
	}
	return strings.Join(parts, "; ")
}
