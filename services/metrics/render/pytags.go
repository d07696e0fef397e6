package render

import (
	"math"
	"strconv"
	"strings"
)

// pyStr formats v as Python's str() does, which is how graphite-web writes
// the value of every tag (its Tags dict stores str(value)): ints as "2",
// floats as "2.0"/"2.5"/"1e-05"/"1e+16", booleans "True"/"False", None as
// "None" and strings as they are.
func pyStr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return pyFloatStr(x)
	case string:
		return x
	}
	return ""
}

// pyFloatStr is Python's repr of a float: the shortest digits that read
// back, positional for exponents in [-4, 16), else d.ddde±XX.
func pyFloatStr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// argStr is Python's str() of argument i as graphite-web 1.1.8 passes it
// on, or of def when it is absent (defaults are not converted). A given
// value is converted by its parameter's type: float(v) for "float" (so 10
// is "10.0"). Otherwise an int literal stays an int and 2.0 a float:
// graphite-web 1.1.8 does not enforce "integer" (dashed(x,2.5) is "2.5").
func (c *call) argStr(i int, def any) string {
	if !c.has(i) {
		return pyStr(def)
	}
	a := c.args[i]
	typ := ""
	if i < len(c.def.Params) {
		typ = c.def.Params[i].Type
	}
	if typ == "float" {
		if f, err := c.floatOf(i, a); err == nil {
			return pyStr(f)
		}
	}
	switch a.Kind {
	case KindNumber:
		if a.IsInt && math.Abs(a.Num) < 1e18 {
			return pyStr(int64(a.Num))
		}
		return pyStr(a.Num)
	case KindBool:
		return pyStr(a.Bool)
	case KindString:
		return a.Str
	case KindNone:
		return "None"
	}
	return a.Raw
}

// funcTags are the tags graphite-web 1.1.8 sets on every series a function
// returns (series.tags[name] = value, stored as str(value)), for the
// functions whose Go code does not set them itself. Each gives the tag and
// its value for one call.
var funcTags = map[string]func(c *call) (tag, value string){
	"scale":                    argTag("scale", 1, nil),
	"scaleToSeconds":           argTag("scaleToSeconds", 1, nil),
	"offset":                   argTag("offset", 1, nil),
	"add":                      argTag("add", 1, nil),
	"pow":                      argTag("pow", 1, nil),
	"delay":                    argTag("delay", 1, nil),
	"nPercentile":              argTag("nPercentile", 1, nil),
	"stdev":                    argTag("stdev", 1, nil),
	"integralByInterval":       argTag("integralByInterval", 1, nil),
	"exponentialMovingAverage": argTag("exponentialMovingAverage", 1, nil),
	"setXFilesFactor":          argTag("xFilesFactor", 1, nil),
	"log":                      argTag("log", 1, 10),
	"dashed":                   argTag("dashed", 1, 5),
	"transformNull":            argTag("transformNull", 1, 0),
	"exp":                      constTag("exp", "e"),
	"sigmoid":                  constTag("sigmoid", "sigmoid"),
	"logit":                    constTag("logit", "logit"),
	"squareRoot":               constTag("squareRoot", "1"),
	"invert":                   constTag("invert", "1"),
	"absolute":                 constTag("absolute", "1"),
	"integral":                 constTag("integral", "1"),
	"isNonNull":                constTag("isNonNull", "1"),
	"holtWintersForecast":      constTag("holtWintersForecast", "1"),
	"holtWintersAberration":    constTag("holtWintersAberration", "1"),
	"round": func(c *call) (string, string) {
		// graphite-web: precision or 0.
		if !c.has(1) || c.args[1].Kind == KindNone || (c.args[1].Kind == KindNumber && c.args[1].Num == 0) {
			return "round", "0"
		}
		return "round", c.argStr(1, 0)
	},
}

func argTag(tag string, i int, def any) func(c *call) (string, string) {
	return func(c *call) (string, string) { return tag, c.argStr(i, def) }
}

func constTag(tag, value string) func(c *call) (string, string) {
	return func(c *call) (string, string) { return tag, value }
}

// tagResult sets def's function tag (funcTags) on every series it returned.
func tagResult(c *call, list []*Series) {
	f, ok := funcTags[c.def.Name]
	if !ok {
		return
	}
	tag, value := f(c)
	for _, s := range list {
		if s.Tags == nil {
			s.Tags = map[string]string{}
		}
		s.Tags[tag] = value
	}
}
