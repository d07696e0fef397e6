// Package eval validates feature flags and evaluates them for a context, as
// the flags service and its OFREP endpoint answer. It is apart from the
// service so that its fuzzing links only the evaluation.
package eval

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strings"

	flagsv1 "github.com/shiploop/shiploop/proto/shiploop/flags/v1"
)

// OFREP / OpenFeature reasons.
const (
	ReasonStatic         = "STATIC"
	ReasonDefault        = "DEFAULT"
	ReasonTargetingMatch = "TARGETING_MATCH"
	ReasonSplit          = "SPLIT"
	ReasonDisabled       = "DISABLED"
)

// Ops a rule may use.
var ops = []string{"eq", "neq", "in", "not_in", "starts_with", "ends_with", "contains"}

var validKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks a flag definition and names the field at fault.
func Validate(f *flagsv1.Flag) error {
	if !validKey.MatchString(f.GetKey()) {
		return fmt.Errorf("key %q: use 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit", f.GetKey())
	}
	if !validKey.MatchString(f.GetEnvironment()) {
		return fmt.Errorf("environment %q: use 1-128 of A-Z a-z 0-9 . _ -", f.GetEnvironment())
	}
	if len(f.GetVariants()) == 0 {
		return fmt.Errorf("variants: at least one (e.g. on=true, off=false)")
	}
	for name, v := range f.GetVariants() {
		if name == "" {
			return fmt.Errorf("variants: a variant without a name")
		}
		if !json.Valid([]byte(v)) {
			return fmt.Errorf("variants.%s: %q is not a JSON value (quote strings: \"\\\"blue\\\"\")", name, v)
		}
	}
	has := func(v string) bool { _, ok := f.GetVariants()[v]; return ok }
	if !has(f.GetDefaultVariant()) {
		return fmt.Errorf("default_variant %q: not one of the variants", f.GetDefaultVariant())
	}
	for i, r := range f.GetRules() {
		if r.GetAttribute() == "" {
			return fmt.Errorf("rules[%d].attribute: required", i)
		}
		if !slices.Contains(ops, r.GetOp()) {
			return fmt.Errorf("rules[%d].op %q: want one of %s", i, r.GetOp(), strings.Join(ops, ", "))
		}
		if len(r.GetValues()) == 0 {
			return fmt.Errorf("rules[%d].values: at least one", i)
		}
		if !has(r.GetVariant()) {
			return fmt.Errorf("rules[%d].variant %q: not one of the variants", i, r.GetVariant())
		}
	}
	if ro := f.GetRollout(); ro != nil && (ro.GetPercent() != 0 || ro.GetVariant() != "") {
		if ro.GetPercent() < 0 || ro.GetPercent() > 100 {
			return fmt.Errorf("rollout.percent %d: want 0-100", ro.GetPercent())
		}
		if !has(ro.GetVariant()) {
			return fmt.Errorf("rollout.variant %q: not one of the variants", ro.GetVariant())
		}
	}
	return nil
}

// Result is one evaluation.
type Result struct {
	Key     string          `json:"key"`
	Value   json.RawMessage `json:"value"`
	Variant string          `json:"variant"`
	Reason  string          `json:"reason"`
}

// Evaluate answers a flag for an evaluation context: disabled -> the
// default variant (DISABLED); the first matching rule (TARGETING_MATCH);
// the rollout when the targeting key falls in its share (SPLIT); else the
// default variant (STATIC without targeting, DEFAULT with).
func Evaluate(f *flagsv1.Flag, ctx map[string]any) Result {
	res := func(variant, reason string) Result {
		return Result{Key: f.GetKey(), Value: json.RawMessage(f.GetVariants()[variant]), Variant: variant, Reason: reason}
	}
	if !f.GetEnabled() {
		return res(f.GetDefaultVariant(), ReasonDisabled)
	}
	for _, r := range f.GetRules() {
		if matches(r, ctx) {
			return res(r.GetVariant(), ReasonTargetingMatch)
		}
	}
	if ro := f.GetRollout(); ro != nil && ro.GetVariant() != "" {
		if key := attr(ctx, "targetingKey"); key != "" && bucket(f.GetKey(), key) < int(ro.GetPercent()) {
			return res(ro.GetVariant(), ReasonSplit)
		}
		return res(f.GetDefaultVariant(), ReasonSplit)
	}
	if len(f.GetRules()) == 0 {
		return res(f.GetDefaultVariant(), ReasonStatic)
	}
	return res(f.GetDefaultVariant(), ReasonDefault)
}

// bucket places a targeting key in 0..99, stable per flag.
func bucket(flag, key string) int {
	h := fnv.New32a()
	h.Write([]byte(flag + "\x00" + key))
	return int(h.Sum32() % 100)
}

// attr reads a context attribute as text ("" when absent); dotted names
// reach into nested objects ("user.email").
func attr(ctx map[string]any, name string) string {
	var cur any = ctx
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		if cur, ok = m[part]; !ok {
			return ""
		}
	}
	switch v := cur.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

func matches(r *flagsv1.Rule, ctx map[string]any) bool {
	v := attr(ctx, r.GetAttribute())
	vals := r.GetValues()
	switch r.GetOp() {
	case "eq", "in":
		return slices.Contains(vals, v)
	case "neq", "not_in":
		return v != "" && !slices.Contains(vals, v)
	case "starts_with":
		return slices.ContainsFunc(vals, func(p string) bool { return v != "" && strings.HasPrefix(v, p) })
	case "ends_with":
		return slices.ContainsFunc(vals, func(p string) bool { return v != "" && strings.HasSuffix(v, p) })
	case "contains":
		return slices.ContainsFunc(vals, func(p string) bool { return v != "" && strings.Contains(v, p) })
	}
	return false
}
