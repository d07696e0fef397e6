package cliparse

import (
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	cfg, err := Config("c.yaml", []byte("server: a:1\ntoken: x\n"))
	if err != nil || cfg["server"] != "a:1" || cfg["token"] != "x" {
		t.Fatalf("Config = %v, %v", cfg, err)
	}
	for body, want := range map[string]string{
		"server: a\nsrvr: b\n": `config c.yaml:2: unknown key "srvr"`,
		"- a\n":                "config c.yaml:1: want a mapping",
		"server: [1, 2]\n":     "config c.yaml:1: server wants a plain value",
		"server: [\n":          "config c.yaml: yaml:",
	} {
		if _, err := Config("c.yaml", []byte(body)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Config(%q) = %v, want an error starting %q", body, err, want)
		}
	}
	if cfg, err := Config("c.yaml", nil); cfg != nil || err != nil {
		t.Errorf("empty config = %v, %v", cfg, err)
	}
}

func TestRule(t *testing.T) {
	r, err := Rule("email ends_with @acme.com, @acme.org -> on")
	if err != nil || r.Attribute != "email" || r.Op != "ends_with" || len(r.Values) != 2 || r.Variant != "on" {
		t.Fatalf("Rule = %v, %v", r, err)
	}
	for _, bad := range []string{"email ends_with", "a eq b ->", "a eq , -> on", "-> on"} {
		if _, err := Rule(bad); err == nil || !strings.Contains(err.Error(), "--rule") {
			t.Errorf("Rule(%q) = %v, want an error naming --rule", bad, err)
		}
	}
}

func FuzzConfig(f *testing.F) {
	f.Add("server: a:1\ntoken: x\n")
	f.Add("server: [1, 2]\n")
	f.Add("color: auto\n---\nserver: b\n")
	f.Fuzz(func(t *testing.T, body string) {
		cfg, err := Config("c.yaml", []byte(body))
		if err != nil && !strings.HasPrefix(err.Error(), "config c.yaml") {
			t.Fatalf("error %q does not name the file", err)
		}
		for k := range cfg {
			if !ConfigKeys[k] {
				t.Fatalf("unknown key %q accepted", k)
			}
		}
	})
}

func FuzzRule(f *testing.F) {
	f.Add("email ends_with @acme.com -> on")
	f.Add("a eq b,c->x")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Rule(s)
		if err == nil && (r.Attribute == "" || r.Variant == "" || len(r.Values) == 0) {
			t.Fatalf("Rule(%q) = %v without an error", s, r)
		}
	})
}
