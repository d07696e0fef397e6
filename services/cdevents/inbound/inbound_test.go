package inbound

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const specDir = "../../../../shared/testdata/cdevents"

// FuzzParseAndMap: any request either is refused as not a CloudEvent (the
// error says so) or gives data that Map refuses or maps to an event with
// an id and a type; nothing panics.
func FuzzParseAndMap(f *testing.F) {
	raw, _ := os.ReadFile(filepath.Join(specDir, "conformance", "service_deployed.json"))
	f.Add("application/cloudevents+json", []byte(`{"specversion":"1.0","id":"1","source":"/x","type":"t","data":`+string(raw)+`}`))
	f.Add("application/json", raw)
	f.Add("application/cloudevents+json", []byte(`{"specversion":"1.0","id":"1","source":"/x","type":"t","data_base64":"e30="}`))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		h := http.Header{"Content-Type": {ct}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/x"}, "Ce-Type": {"t"}}
		_, data, err := ParseHTTP(h, body)
		if err != nil {
			if !errors.Is(err, ErrNotCloudEvent) {
				t.Fatalf("ParseHTTP error %v is not ErrNotCloudEvent", err)
			}
			return
		}
		ev, err := Map(data)
		if err == nil && (ev.ID == "" || ev.Type == "" || ev.Data == nil) {
			t.Fatalf("Map(%q) = %+v without an id, type or data", data, ev)
		}
		if err == nil && strings.HasPrefix(ev.Type, "external.") && strings.ContainsAny(strings.TrimPrefix(ev.Type, "external."), ". *>") {
			t.Fatalf("type %q is not one subject token after external.", ev.Type)
		}
		_ = PurlVersion(string(data))
	})
}
