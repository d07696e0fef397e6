package schema

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// specDir is the cdevents/spec v0.5.1 copy shared by the project's tests.
const specDir = "../../../../shared/testdata/cdevents"

var loadOnce = sync.OnceValues(func() (*Validator, error) { return LoadSchemas(os.DirFS(specDir)) })

// FuzzValidate: any document never panics the validator; one it accepts
// has a context.type of a known event type (or a custom dev.cdeventsx one,
// checked against the custom schema), and a rejection is a *SchemaError.
func FuzzValidate(f *testing.F) {
	for _, name := range []string{"service_deployed.json", "pipelinerun_finished.json", "build_finished.json"} {
		raw, _ := os.ReadFile(filepath.Join(specDir, "conformance", name))
		f.Add(raw)
	}
	f.Add([]byte(`{"context":{"type":"dev.cdeventsx.a-b.c.1.2.3"}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := loadOnce()
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Validate(raw); err != nil {
			if _, ok := err.(*SchemaError); !ok {
				t.Fatalf("error %T %v is not a *SchemaError", err, err)
			}
			return
		}
		var head struct {
			Context struct {
				Type string `json:"type"`
			} `json:"context"`
		}
		_ = json.Unmarshal(raw, &head)
		if _, known := v.byType[typeKey(head.Context.Type)]; !known && !strings.HasPrefix(head.Context.Type, "dev.cdeventsx.") {
			t.Fatalf("accepted a CDEvent of unknown type %q", head.Context.Type)
		}
	})
}
