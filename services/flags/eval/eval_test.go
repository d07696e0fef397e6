package eval

import (
	"encoding/json"
	"testing"

	flagsv1 "github.com/shiploop/shiploop/proto/shiploop/flags/v1"
)

// FuzzEvaluate: any rule a user can store and any evaluation context never
// panic the validation or the evaluation, and an evaluation of a valid flag
// always names one of the flag's variants.
func FuzzEvaluate(f *testing.F) {
	f.Add("email", "ends_with", "@acme.com", `{"email":"a@acme.com"}`)
	f.Add("user.plan", "eq", "pro", `{"user":{"plan":"pro"}}`)
	f.Add("country", "matches", "^(de|fr)$", `{"country":"de","targetingKey":"u1"}`)
	f.Fuzz(func(t *testing.T, attr, op, val, ctxJSON string) {
		fl := &flagsv1.Flag{Key: "k", Environment: "e", Enabled: true, Variants: map[string]string{"on": "true", "off": "false"}, DefaultVariant: "off",
			Rules: []*flagsv1.Rule{{Attribute: attr, Op: op, Values: []string{val}, Variant: "on"}}}
		valid := Validate(fl) == nil
		var ctx map[string]any
		_ = json.Unmarshal([]byte(ctxJSON), &ctx)
		r := Evaluate(fl, ctx)
		if valid && r.Variant != "on" && r.Variant != "off" {
			t.Fatalf("evaluated to variant %q, not one of the flag's", r.Variant)
		}
	})
}
