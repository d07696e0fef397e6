package metrics

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	"github.com/shiploop/shiploop/services/metrics/carbon"
)

const schemasConf = `# as carbon ships it, plus one of ours
[carbon]
pattern = ^carbon\.
retentions = 60:90d

[deploys]
pattern = ^shiploop\.deploys\.
retentions = 1m:30d,1h:5y

[default_1min_for_1day]
pattern = .*
retentions = 10s:1d,1m:30d
`

const aggregationConf = `[min]
pattern = \.min$
xFilesFactor = 0.1
aggregationMethod = min

[count]
pattern = \.count$
xFilesFactor = 0
aggregationMethod = sum
`

func writeConf(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStorageConfFiles: carbon's two files decide each series' archives
// and rollup, the first matching section of each winning.
func TestStorageConfFiles(t *testing.T) {
	schemas, err := LoadSchemas(writeConf(t, "storage-schemas.conf", schemasConf), writeConf(t, "storage-aggregation.conf", aggregationConf))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, ret, agg string
		xff            float64
	}{
		{"carbon.agents.a.cpu", "60:7776000", "average", 0.5},
		{"carbon.agents.a.errors.count", "60:7776000", "sum", 0},
		{"shiploop.deploys.prod.duration.min", "60:2592000,3600:157680000", "min", 0.1},
		{"app.requests.count", "10:86400,60:2592000", "sum", 0},
		{"app.latency", "10:86400,60:2592000", "average", 0.5},
	} {
		sc := schemaFor(schemas, c.name)
		if got := formatRetentions(sc.Archives); got != c.ret || sc.Aggregation != c.agg || sc.XFilesFactor != c.xff {
			t.Errorf("%s: %s %s xff %v, want %s %s xff %v", c.name, got, sc.Aggregation, sc.XFilesFactor, c.ret, c.agg, c.xff)
		}
	}
	// Only the schemas file: shiploop's own rollups (counters sum).
	schemas, err = LoadSchemas(writeConf(t, "s.conf", schemasConf), "")
	if err != nil {
		t.Fatal(err)
	}
	if sc := schemaFor(schemas, "app.requests.count"); sc.Aggregation != "sum" {
		t.Errorf("without an aggregation file, *.count rolls up by %s, want sum", sc.Aggregation)
	}
	if schemas, err := LoadSchemas("", ""); err != nil || schemas != nil {
		t.Errorf("no files: %v, %v; want the defaults (nil)", schemas, err)
	}
}

func TestStorageConfErrors(t *testing.T) {
	for _, c := range []struct{ schemas, agg, want string }{
		{"pattern = .*\n", "", "s.conf:1: \"pattern = .*\" comes before any [section]"},
		{"[a]\npattern = (\nretentions = 10s:1d\n", "", "s.conf:2: [a]: pattern: error parsing regexp"},
		{"[a]\npattern = .*\n", "", "s.conf:1: [a]: retentions is required"},
		{"[a]\npattern = .*\nretentions = 10s:1d,15s:7d\n", "", "s.conf:3: [a]: retention \"15s:7d\": step 15s must be a multiple of the previous step 10s"},
		{"[a]\npattern = .*\nretention = 10s:1d\n", "", "s.conf:3: [a]: unknown key \"retention\""},
		{"[a\n", "", "s.conf:1: want a section header"},
		{"", "[m]\npattern = x\naggregationMethod = median\n", "a.conf:3: [m]: aggregationMethod \"median\": want average, sum, min, max or last"},
		{"", "[m]\npattern = x\nxFilesFactor = 2\n", "a.conf:3: [m]: xFilesFactor \"2\": want a number from 0 to 1"},
		{"# nothing\n", "", "s.conf: no [section] in the file"},
	} {
		var s, a string
		if c.schemas != "" {
			s = writeConf(t, "s.conf", c.schemas)
		}
		if c.agg != "" {
			a = writeConf(t, "a.conf", c.agg)
		}
		_, err := LoadSchemas(s, a)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("LoadSchemas(%q, %q) = %v, want an error containing %q", c.schemas, c.agg, err, c.want)
		}
	}
}

// TestSeriesKeepTheirRetentions: a series keeps the archives it was created
// with when the schemas change later (its chunks were laid out for them);
// new series follow the new schemas.
func TestSeriesKeepTheirRetentions(t *testing.T) {
	storetest.Engines(t, "metrics", nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, Migrations()...); err != nil {
			t.Fatal(err)
		}
		now := time.Now().Unix()
		old, _ := ParseStorageSchemas("old.conf", []byte("[all]\npattern = .*\nretentions = 10s:1d\n"))
		st, err := NewStorage(ctx, StorageConfig{DB: db, Schemas: old})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Add(ctx, []carbon.Point{{Name: "app.old", Value: 7, Timestamp: now - now%10 - 30}}); err != nil {
			t.Fatal(err)
		}
		if err := st.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		changed, _ := ParseStorageSchemas("new.conf", []byte("[all]\npattern = .*\nretentions = 1m:7d\n"))
		st2, err := NewStorage(ctx, StorageConfig{DB: db, Schemas: changed})
		if err != nil {
			t.Fatal(err)
		}
		s, err := st2.Read(ctx, "app.old", now-300, now)
		if err != nil || s == nil {
			t.Fatalf("Read(app.old) = %v, %v", s, err)
		}
		found := false
		for _, v := range s.Values {
			found = found || v == 7
		}
		if s.Step != 10 || !found {
			t.Errorf("app.old after the change: step %d, values %v; want step 10 with the 7 it was given", s.Step, s.Values)
		}
		if err := st2.Add(ctx, []carbon.Point{{Name: "app.new", Value: 1, Timestamp: now}}); err != nil {
			t.Fatal(err)
		}
		if s, _ := st2.Read(ctx, "app.new", now-600, now); s == nil || s.Step != 60 {
			t.Errorf("a new series: %v, want the new schema's 60 s step", s)
		}
	})
}
