package hmrequest

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzParse: any query and form a step can send never panics the reader;
// every error names a variable, and a request that passes Check has a PHID
// target and a diff or a full commit hash.
func FuzzParse(f *testing.F) {
	f.Add("target.phid=PHID-HMBT-1&buildable.diff=3&buildable.revision=D4", "")
	f.Add("buildable.commit=ABC&repository.vcs=svn&token=x", "a=b")
	f.Add("%zz", "buildable.diff=-1")
	f.Add("repo=acme/web&target.phid=PHID-HMBT-abc", "buildable.commit=0123456789abcdef0123456789abcdef01234567&repository.vcs=hg")
	f.Fuzz(func(t *testing.T, query, body string) {
		req, err := http.NewRequest("POST", "http://x/hooks/harbormaster", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		q, err := Parse(req)
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("error %T %v does not name a field", err, err)
			}
			return
		}
		if err := q.Check(); err == nil {
			if !PHID.MatchString(q.TargetPHID) || (q.DiffID <= 0 && !CommitHash.MatchString(q.Commit)) {
				t.Fatalf("accepted %+v", q)
			}
		} else if _, ok := err.(*FieldError); !ok {
			t.Fatalf("Check error %T %v does not name a field", err, err)
		}
	})
}
