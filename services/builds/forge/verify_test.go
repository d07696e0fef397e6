package forge

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"strings"
	"testing"
)

// GitHub's documented test vector (validating-webhook-deliveries).
const (
	vectorBody = "Hello, World!"
	vectorHex  = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)

func TestVerifyGitHubDocVector(t *testing.T) {
	if got := hmacHex(testSecret, []byte(vectorBody)); got != vectorHex {
		t.Fatalf("test HMAC = %s, want GitHub's %s", got, vectorHex)
	}
	h := headers("X-Hub-Signature-256", "sha256="+vectorHex)
	if err := Verify(GitHub, h, []byte(vectorBody), testSecret); err != nil {
		t.Fatal(err)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(vectorBody)
	wrongHex := hmacHex("wrong secret", body)
	tests := []struct {
		name   string
		forge  string
		header http.Header
		ok     bool
		reason string // in the error when !ok
	}{
		{"github right", GitHub, headers("X-Hub-Signature-256", "sha256="+vectorHex), true, ""},
		{"github uppercase hex", GitHub, headers("X-Hub-Signature-256", "sha256="+strings.ToUpper(vectorHex)), true, ""},
		{"github wrong secret", GitHub, headers("X-Hub-Signature-256", "sha256="+wrongHex), false, "X-Hub-Signature-256 does not match"},
		{"github missing", GitHub, headers(), false, "missing X-Hub-Signature-256 header"},
		{"github legacy sha1 only", GitHub, headers("X-Hub-Signature", "sha1=0a0b"), false, "missing X-Hub-Signature-256 header"},
		{"github malformed hex", GitHub, headers("X-Hub-Signature-256", "sha256=zz"+vectorHex[2:]), false, "malformed X-Hub-Signature-256"},
		{"github short hex", GitHub, headers("X-Hub-Signature-256", "sha256="+vectorHex[:40]), false, "malformed X-Hub-Signature-256"},
		{"github no prefix", GitHub, headers("X-Hub-Signature-256", vectorHex), false, "malformed X-Hub-Signature-256"},

		{"gitlab right", GitLab, headers("X-Gitlab-Token", testSecret), true, ""},
		{"gitlab wrong", GitLab, headers("X-Gitlab-Token", "It's a Secret to Everybody!"), false, "X-Gitlab-Token does not match"},
		{"gitlab prefix of the secret", GitLab, headers("X-Gitlab-Token", "It's"), false, "X-Gitlab-Token does not match"},
		{"gitlab missing", GitLab, headers(), false, "missing X-Gitlab-Token header"},

		{"gitea right", Gitea, headers("X-Gitea-Signature", vectorHex), true, ""},
		{"gitea wrong", Gitea, headers("X-Gitea-Signature", wrongHex), false, "X-Gitea-Signature does not match"},
		{"gitea missing", Gitea, headers("X-Hub-Signature-256", "sha256="+vectorHex), false, "missing X-Gitea-Signature header"},
		{"gitea malformed hex", Gitea, headers("X-Gitea-Signature", "not-hex"), false, "malformed X-Gitea-Signature"},
		{"gitea with sha256= prefix", Gitea, headers("X-Gitea-Signature", "sha256="+vectorHex), false, "malformed X-Gitea-Signature"},

		{"forgejo right", Forgejo, headers("X-Forgejo-Signature", vectorHex), true, ""},
		{"forgejo falls back to gitea header", Forgejo, headers("X-Gitea-Signature", vectorHex), true, ""},
		{"forgejo wrong, gitea right", Forgejo, headers("X-Forgejo-Signature", wrongHex, "X-Gitea-Signature", vectorHex), false, "X-Forgejo-Signature does not match"},
		{"forgejo missing", Forgejo, headers(), false, "missing X-Forgejo-Signature header"},
		{"forgejo malformed hex", Forgejo, headers("X-Forgejo-Signature", vectorHex+"0"), false, "malformed X-Forgejo-Signature"},

		{"bitbucket right", Bitbucket, headers("X-Hub-Signature", "sha256="+vectorHex), true, ""},
		{"bitbucket wrong", Bitbucket, headers("X-Hub-Signature", "sha256="+wrongHex), false, "X-Hub-Signature does not match"},
		{"bitbucket missing", Bitbucket, headers(), false, "missing X-Hub-Signature header"},
		{"bitbucket malformed hex", Bitbucket, headers("X-Hub-Signature", "sha256=xyz"), false, "malformed X-Hub-Signature"},
		{"bitbucket sha1", Bitbucket, headers("X-Hub-Signature", "sha1=0a0b"), false, "malformed X-Hub-Signature"},

		{"generic signature right", Generic, headers("X-Shiploop-Signature", "sha256="+vectorHex), true, ""},
		{"generic signature wrong", Generic, headers("X-Shiploop-Signature", "sha256="+wrongHex), false, "X-Shiploop-Signature does not match"},
		{"generic signature malformed", Generic, headers("X-Shiploop-Signature", "sha256=00"), false, "malformed X-Shiploop-Signature"},
		{"generic wrong signature with right bearer", Generic,
			headers("X-Shiploop-Signature", "sha256="+wrongHex, "Authorization", "Bearer "+testSecret), false, "X-Shiploop-Signature does not match"},
		{"generic bearer right", Generic, headers("Authorization", "Bearer "+testSecret), true, ""},
		{"generic bearer lowercase scheme", Generic, headers("Authorization", "bearer "+testSecret), true, ""},
		{"generic bearer wrong", Generic, headers("Authorization", "Bearer nope"), false, "Authorization does not match"},
		{"generic basic auth", Generic, headers("Authorization", "Basic dXNlcjpwYXNz"), false, "malformed Authorization"},
		{"generic bearer empty", Generic, headers("Authorization", "Bearer "), false, "missing Authorization"},
		{"generic missing", Generic, headers(), false, "missing X-Shiploop-Signature or Authorization header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.forge, tt.header, body, testSecret)
			if tt.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("Verify = %v, want ErrUnauthorized", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.reason) {
				t.Errorf("error %q does not say %q", msg, tt.reason)
			}
			// Never echo the secret, the expected MAC or what was sent.
			for _, leak := range []string{testSecret, "It's", vectorHex, wrongHex, "nope", "dXNlcjpwYXNz"} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q leaks %q", msg, leak)
				}
			}
		})
	}
}

func TestVerifyTamperedBody(t *testing.T) {
	h := headers("X-Hub-Signature-256", "sha256="+vectorHex)
	if err := Verify(GitHub, h, []byte(vectorBody+" "), testSecret); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Verify of a changed body = %v, want ErrUnauthorized", err)
	}
}

func TestVerifyEmptySecret(t *testing.T) {
	// Anyone can compute an HMAC keyed with the empty string.
	empty := hmacHex("", []byte(vectorBody))
	for _, tc := range []struct {
		forge  string
		header http.Header
	}{
		{GitHub, headers("X-Hub-Signature-256", "sha256="+empty)},
		{GitLab, headers("X-Gitlab-Token", "")},
		{Gitea, headers("X-Gitea-Signature", empty)},
		{Generic, headers("Authorization", "Bearer ")},
	} {
		if err := Verify(tc.forge, tc.header, []byte(vectorBody), ""); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s with an empty secret: %v, want ErrUnauthorized", tc.forge, err)
		}
	}
}

func TestVerifyUnknownForge(t *testing.T) {
	err := Verify("sourcehut", headers("X-Hub-Signature-256", "sha256="+vectorHex), []byte(vectorBody), testSecret)
	if !errors.Is(err, ErrUnauthorized) || !errors.Is(err, ErrUnknownForge) {
		t.Fatalf("Verify = %v, want ErrUnauthorized and ErrUnknownForge", err)
	}
}

// TestVerifyIsConstantTime checks verify.go compares secret material only
// with hmac.Equal or subtle.ConstantTimeCompare: it calls both, calls no
// variable-time comparison, and every == or != has a literal or a package
// constant on one side (value == "", result != 1, len(x) != sha256.Size),
// never two values.
func TestVerifyIsConstantTime(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "verify.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]bool{}
	for _, imp := range f.Imports {
		path := strings.Trim(imp.Path.Value, `"`)
		imports[path[strings.LastIndex(path, "/")+1:]] = true
	}
	isConst := func(e ast.Expr) bool {
		if sel, ok := e.(*ast.SelectorExpr); ok {
			pkg, ok := sel.X.(*ast.Ident)
			return ok && imports[pkg.Name]
		}
		return isLiteral(e)
	}
	calls := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, ok := sel.X.(*ast.Ident)
			if !ok {
				return true
			}
			name := pkg.Name + "." + sel.Sel.Name
			calls[name] = true
			switch name {
			case "bytes.Equal", "bytes.Compare", "strings.Compare", "reflect.DeepEqual":
				t.Errorf("%s: %s is not constant-time", fset.Position(n.Pos()), name)
			case "strings.EqualFold":
				if !isConst(n.Args[0]) && !isConst(n.Args[1]) {
					t.Errorf("%s: strings.EqualFold of two values", fset.Position(n.Pos()))
				}
			}
		case *ast.BinaryExpr:
			if (n.Op == token.EQL || n.Op == token.NEQ) && !isConst(n.X) && !isConst(n.Y) {
				t.Errorf("%s: %s between two values; use hmac.Equal or subtle.ConstantTimeCompare", fset.Position(n.Pos()), n.Op)
			}
		}
		return true
	})
	for _, want := range []string{"hmac.Equal", "subtle.ConstantTimeCompare"} {
		if !calls[want] {
			t.Errorf("verify.go does not call %s", want)
		}
	}
}

func isLiteral(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		return true
	case *ast.Ident:
		return e.Name == "nil" || e.Name == "true" || e.Name == "false"
	}
	return false
}
