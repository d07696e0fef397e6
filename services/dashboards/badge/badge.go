// Package badge renders shields-style SVG badges byte for byte as
// badge-maker 6.0.0 does (styles flat, flat-square, plastic, for-the-badge
// and social; no logos), and the same data as shields endpoint JSON.
//
// Text widths come from the tables of the npm package anafanafo 2.0.0, the
// ones badge-maker 6.0.0 measures with (widths.bin, generated from the
// package's data/*.json by gen_widths.go; MIT, Metabolize LLC).
package badge

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
)

// Style is a badge style.
type Style string

// The styles badge-maker knows.
const (
	Flat        Style = "flat"
	FlatSquare  Style = "flat-square"
	Plastic     Style = "plastic"
	ForTheBadge Style = "for-the-badge"
	Social      Style = "social"
)

// Styles lists every style, the default first.
var Styles = []Style{Flat, FlatSquare, Plastic, ForTheBadge, Social}

// ParseStyle reads a style name; "" is flat.
func ParseStyle(s string) (Style, error) {
	if s == "" {
		return Flat, nil
	}
	for _, st := range Styles {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("style %q: want one of flat, flat-square, plastic, for-the-badge, social", s)
}

// Badge is what a badge says. Colors are badge-maker's: a named color
// (brightgreen, red …, and aliases such as success), hex with or without
// "#", or a CSS color.
type Badge struct {
	Label, Message    string
	Color, LabelColor string
	Style             Style
	// Links are the optional left and right links.
	Links [2]string
}

// namedColors is badge-maker 6.0.0's palette.
var namedColors = map[string]string{
	"brightgreen": "#4b0", "green": "#67ac09", "yellow": "#d8b800", "yellowgreen": "#95991a",
	"orange": "#ea7233", "red": "#dd4343", "blue": "#007ec6", "grey": "#555", "lightgrey": "#939393",
}

var colorAliases = map[string]string{
	"gray": "grey", "lightgray": "lightgrey", "critical": "red", "important": "orange",
	"success": "brightgreen", "informational": "blue", "inactive": "lightgrey",
}

func isHex(s string) bool {
	if len(s) != 3 && len(s) != 6 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isCSSColor(s string) bool {
	l := strings.ToLower(s)
	switch {
	case strings.HasPrefix(l, "#") && (len(l) == 4 || len(l) == 5 || len(l) == 7 || len(l) == 9) && isHexDigits(l[1:]):
		return true
	case strings.HasPrefix(l, "rgb(") || strings.HasPrefix(l, "rgba(") || strings.HasPrefix(l, "hsl(") || strings.HasPrefix(l, "hsla("):
		return strings.HasSuffix(l, ")")
	}
	for _, c := range l {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return l != ""
}

func isHexDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// svgColor is badge-maker's toSvgColor: "" for a color it does not accept.
func svgColor(c string) string {
	switch {
	case c == "":
		return ""
	case namedColors[c] != "":
		return namedColors[c]
	case colorAliases[c] != "":
		return namedColors[colorAliases[c]]
	case isHex(c):
		return "#" + strings.ToLower(c)
	case isCSSColor(c):
		return strings.ToLower(c)
	}
	return ""
}

// brightness is badge-maker's, rounded to hundredths; 0 for colors it
// cannot read as RGB.
func brightness(c string) float64 {
	if !strings.HasPrefix(c, "#") || !isHexDigits(c[1:]) {
		return 0
	}
	h := c[1:]
	var r, g, b uint64
	switch len(h) {
	case 3, 4:
		r, _ = strconv.ParseUint(h[0:1]+h[0:1], 16, 8)
		g, _ = strconv.ParseUint(h[1:2]+h[1:2], 16, 8)
		b, _ = strconv.ParseUint(h[2:3]+h[2:3], 16, 8)
	case 6, 8:
		r, _ = strconv.ParseUint(h[0:2], 16, 8)
		g, _ = strconv.ParseUint(h[2:4], 16, 8)
		b, _ = strconv.ParseUint(h[4:6], 16, 8)
	default:
		return 0
	}
	v := (float64(r)*299 + float64(g)*587 + float64(b)*114) / 255000
	return float64(int64(v*100+0.5)) / 100
}

func textColors(bg string) (text, shadow string) {
	if brightness(bg) <= 0.69 {
		return "#fff", "#010101"
	}
	return "#333", "#ccc"
}

// Width tables.

type widthRange struct {
	first, last uint32
	width       float64
}

type font int

const (
	verdana11 font = iota
	verdana10
	verdana10Bold
	helvetica11Bold
)

//go:embed widths.bin
var widthsBin []byte

var tables = sync.OnceValue(func() [4][]widthRange {
	var out [4][]widthRange
	r := bytes.NewReader(widthsBin)
	read := func() uint64 {
		v, err := binary.ReadUvarint(r)
		if err != nil {
			panic("badge: widths.bin is corrupt: " + err.Error()) // embedded at build time
		}
		return v
	}
	for i := range out {
		n := read()
		t := make([]widthRange, n)
		prev := uint64(0)
		for j := range t {
			first := prev + read()
			last := first + read()
			t[j] = widthRange{uint32(first), uint32(last), float64(read()) / 100}
			prev = last
		}
		out[i] = t
	}
	return out
})

// widthOf sums the widths of s's code points as anafanafo does: control
// characters count 0, a code point the table lacks counts as "m".
func (f font) widthOf(s string) float64 {
	t := tables()[f]
	em := charWidth(t, 'm')
	var w float64
	for _, c := range s {
		if c < 32 || c >= 127 && c <= 159 {
			continue // control characters are zero-width
		}
		cw := charWidth(t, c)
		if cw < 0 {
			cw = em
		}
		w += cw
	}
	return w
}

func charWidth(t []widthRange, c rune) float64 {
	lo, hi := 0, len(t)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t[m].first <= uint32(c) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 || t[lo-1].last < uint32(c) {
		return -1
	}
	return t[lo-1].width
}

// preferredWidth is badge-maker's roundUpToOdd(width | 0).
func preferredWidth(s string, f font) int {
	w := int(f.widthOf(s))
	if w%2 == 0 {
		w++
	}
	return w
}

// TextWidth is the unrounded width of s in 11px Verdana, as anafanafo
// measures it.
func TextWidth(s string) float64 { return verdana11.widthOf(s) }

// Escaping and numbers, as JavaScript prints them.

var xmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")

func esc(s string) string { return xmlEscaper.Replace(s) }

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// SVG renders b.
func SVG(b Badge) string {
	var w strings.Builder
	w.Grow(1500)
	Write(&w, b)
	return w.String()
}

// Write renders b into w.
func Write(w *strings.Builder, b Badge) {
	color := svgColor(b.Color)
	if color == "" {
		color = "#4c1"
	}
	labelColor := svgColor(b.LabelColor)
	switch b.Style {
	case FlatSquare:
		classic(w, b, color, labelColor, 20, 0, false, "")
	case Plastic:
		classic(w, b, color, labelColor, 18, -10, true, `<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#fff" stop-opacity=".7"/><stop offset=".1" stop-color="#aaa" stop-opacity=".1"/><stop offset=".9" stop-color="#000" stop-opacity=".3"/><stop offset="1" stop-color="#000" stop-opacity=".5"/></linearGradient>`)
	case ForTheBadge:
		forTheBadge(w, b, color, labelColor)
	case Social:
		social(w, b, labelColor)
	default:
		classic(w, b, color, labelColor, 20, 0, true, `<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>`)
	}
}

func accessible(label, message string) string {
	if label == "" {
		return message
	}
	return label + ": " + message
}

// open writes the <svg> element and the title; links on both sides leave
// out the role and title, as badge-maker does.
func open(w *strings.Builder, b Badge, width string, height int, label, message string) {
	both := b.Links[0] != "" && b.Links[1] != ""
	w.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" width="`)
	w.WriteString(width)
	w.WriteString(`" height="`)
	w.WriteString(strconv.Itoa(height))
	w.WriteString(`"`)
	if !both {
		a := esc(accessible(label, message))
		w.WriteString(` role="img" aria-label="`)
		w.WriteString(a)
		w.WriteString(`"><title>`)
		w.WriteString(a)
		w.WriteString(`</title>`)
		return
	}
	w.WriteString(`>`)
}

// classic draws flat, flat-square and plastic: they differ in height,
// vertical text offset, gradient and clip.
func classic(w *strings.Builder, b Badge, color, labelColor string, height, vmargin int, rounded bool, gradient string) {
	const pad = 5
	hasLabel := b.Label != "" || labelColor != ""
	if labelColor == "" {
		labelColor = "#555"
	}
	if !hasLabel {
		labelColor = color
	}
	labelWidth := 0
	if b.Label != "" {
		labelWidth = preferredWidth(b.Label, verdana11)
	}
	leftWidth := 0
	if hasLabel {
		leftWidth = labelWidth + 2*pad
	}
	messageWidth := preferredWidth(b.Message, verdana11)
	messageMargin := leftWidth
	if b.Message != "" {
		messageMargin--
	}
	if !hasLabel {
		messageMargin++
	}
	rightWidth := messageWidth + 2*pad
	width := strconv.Itoa(leftWidth + rightWidth)
	h := strconv.Itoa(height)
	lw, rw := strconv.Itoa(leftWidth), strconv.Itoa(rightWidth)

	wrapBody := b.Links[0] != "" && b.Links[1] == ""
	open(w, b, width, height, b.Label, b.Message)
	if wrapBody {
		w.WriteString(`<a target="_blank" href="` + esc(b.Links[0]) + `">`)
	}
	if rounded {
		w.WriteString(`<filter id="blur"><feGaussianBlur stdDeviation="16"/></filter>`)
		w.WriteString(gradient)
		rx := "3"
		if height == 18 {
			rx = "4"
		}
		w.WriteString(`<clipPath id="r"><rect width="` + width + `" height="` + h + `" rx="` + rx + `"/></clipPath><g clip-path="url(#r)">`)
	} else {
		w.WriteString(`<g shape-rendering="crispEdges">`)
	}
	w.WriteString(`<rect width="` + lw + `" height="` + h + `" fill="` + esc(labelColor) + `"/><rect x="` + lw + `" width="` + rw + `" height="` + h + `" fill="` + esc(color) + `"/>`)
	if rounded {
		w.WriteString(`<rect width="` + width + `" height="` + h + `" fill="url(#s)"/>`)
	}
	w.WriteString(`</g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110">`)
	text := func(margin int, content string, bg string, textWidth int, link string, linkWidth int) {
		if content == "" {
			return
		}
		tc, sc := textColors(bg)
		x := num(10 * (float64(margin) + 0.5*float64(textWidth) + pad))
		tl := strconv.Itoa(10 * textWidth)
		ec := esc(content)
		if link != "" {
			rx := 0
			if margin > 1 {
				rx = margin + 1
			}
			w.WriteString(`<a target="_blank" href="` + esc(link) + `"><rect width="` + strconv.Itoa(linkWidth) + `" x="` + strconv.Itoa(rx) + `" height="` + h + `" fill="rgba(0,0,0,0)"/>`)
		}
		fill := ""
		if tc != "#fff" {
			fill = ` fill="` + tc + `"`
		}
		if !rounded {
			w.WriteString(`<text x="` + x + `" y="` + strconv.Itoa(140+vmargin) + `"` + fill + ` textLength="` + tl + `" transform="scale(.1)">` + ec + `</text>`)
		} else {
			sy := strconv.Itoa(150 + vmargin)
			w.WriteString(`<g transform="scale(.1)"><g aria-hidden="true" fill="` + sc + `"><text x="` + x + `" y="` + sy + `" fill-opacity=".8" filter="url(#blur)" textLength="` + tl + `">` + ec + `</text><text x="` + x + `" y="` + sy + `" fill-opacity=".3" textLength="` + tl + `">` + ec + `</text></g><text x="` + x + `" y="` + strconv.Itoa(140+vmargin) + `"` + fill + ` textLength="` + tl + `">` + ec + `</text></g>`)
		}
		if link != "" {
			w.WriteString(`</a>`)
		}
	}
	leftLink := ""
	if !wrapBody {
		leftLink = b.Links[0]
	}
	text(1, b.Label, labelColor, labelWidth, leftLink, leftWidth)
	text(messageMargin, b.Message, color, messageWidth, b.Links[1], rightWidth)
	w.WriteString(`</g>`)
	if wrapBody {
		w.WriteString(`</a>`)
	}
	w.WriteString(`</svg>`)
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

func forTheBadge(w *strings.Builder, b Badge, color, labelColor string) {
	const (
		margin  = 12.0
		spacing = 1.25
		height  = 28
	)
	label, message := strings.ToUpper(b.Label), strings.ToUpper(b.Message)
	if labelColor == "" {
		labelColor = "#555"
	}
	var labelTW, messageTW float64
	if label != "" {
		labelTW = float64(int(verdana10.widthOf(label))) + spacing*float64(utf16Len(label))
	}
	if message != "" {
		messageTW = float64(int(verdana10Bold.widthOf(message))) + spacing*float64(utf16Len(message))
	}
	labelRect := 0.0
	messageX := margin
	if label != "" {
		labelRect = margin + labelTW + margin
		messageX = labelRect + margin
	}
	messageRect := 2*margin + messageTW
	width := num(labelRect + messageRect)
	open(w, b, width, height, label, message)
	w.WriteString(`<g shape-rendering="crispEdges">`)
	if label != "" {
		w.WriteString(`<rect width="` + num(labelRect) + `" height="28" fill="` + esc(labelColor) + `"/>`)
	}
	w.WriteString(`<rect x="` + num(labelRect) + `" width="` + num(messageRect) + `" height="28" fill="` + esc(color) + `"/></g>`)
	w.WriteString(`<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="100">`)
	if label != "" {
		tc, _ := textColors(labelColor)
		w.WriteString(`<text transform="scale(.1)" x="` + num(10*(margin+0.5*labelTW)) + `" y="175" textLength="` + num(10*labelTW) + `"`)
		if tc != "#fff" {
			w.WriteString(` fill="` + tc + `"`)
		}
		w.WriteString(`>` + esc(label) + `</text>`)
	}
	tc, _ := textColors(color)
	w.WriteString(`<text transform="scale(.1)" x="` + num(10*(messageX+0.5*messageTW)) + `" y="175" textLength="` + num(10*messageTW) + `"`)
	if tc != "#fff" {
		w.WriteString(` fill="` + tc + `"`)
	}
	w.WriteString(` font-weight="bold">` + esc(message) + `</text></g></svg>`)
}

func social(w *strings.Builder, b Badge, _ string) {
	label := b.Label
	if label != "" {
		r := []rune(label)
		label = strings.ToUpper(string(r[0])) + string(r[1:])
	}
	const (
		labelPad   = 5
		messagePad = 4
		gutter     = 6
	)
	labelTW := preferredWidth(label, helvetica11Bold)
	messageTW := preferredWidth(b.Message, helvetica11Bold)
	labelRect := labelTW + 2*labelPad
	messageRect := messageTW + 2*messagePad
	hasMessage := b.Message != ""
	width := labelRect + 1
	if hasMessage {
		width += gutter + messageRect
	}
	open(w, b, strconv.Itoa(width), 20, label, b.Message)
	w.WriteString(`<style>a:hover #llink{fill:url(#b);stroke:#ccc}a:hover #rlink{fill:#4183c4}</style><linearGradient id="a" x2="0" y2="100%"><stop offset="0" stop-color="#fcfcfc" stop-opacity="0"/><stop offset="1" stop-opacity=".1"/></linearGradient><linearGradient id="b" x2="0" y2="100%"><stop offset="0" stop-color="#ccc" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>`)
	lr := strconv.Itoa(labelRect)
	w.WriteString(`<g stroke="#d5d5d5"><rect stroke="none" fill="#fcfcfc" x=".5" y=".5" width="` + lr + `" height="19" rx="2"/>`)
	if hasMessage {
		mainX := num(float64(labelRect+gutter) + 0.5)
		w.WriteString(`<rect x="` + mainX + `" y=".5" width="` + strconv.Itoa(messageRect) + `" height="19" rx="2" fill="#fafafa"/><rect x="` + strconv.Itoa(labelRect+gutter) + `" y="7.5" width=".5" height="5" stroke="#fafafa"/><path d="M` + mainX + ` 6.5 l-3 3v1 l3 3" fill="#fafafa"/>`)
	}
	w.WriteString(`</g><g aria-hidden="true" fill="#333" text-anchor="middle" font-family="Helvetica Neue,Helvetica,Arial,sans-serif" text-rendering="geometricPrecision" font-weight="700" font-size="110px" line-height="14px">`)
	w.WriteString(`<rect id="llink" stroke="#d5d5d5" fill="url(#a)" x=".5" y=".5" width="` + lr + `" height="19" rx="2"/>`)
	lx := num(10 * (float64(labelTW)/2 + labelPad))
	ll := strconv.Itoa(10 * labelTW)
	el := esc(label)
	w.WriteString(`<text aria-hidden="true" x="` + lx + `" y="150" fill="#fff" transform="scale(.1)" textLength="` + ll + `">` + el + `</text><text x="` + lx + `" y="140" transform="scale(.1)" textLength="` + ll + `">` + el + `</text>`)
	if hasMessage {
		mx := num(10 * (float64(labelRect+gutter) + float64(messageRect)/2))
		ml := strconv.Itoa(10 * messageTW)
		em := esc(b.Message)
		w.WriteString(`<text aria-hidden="true" x="` + mx + `" y="150" fill="#fff" transform="scale(.1)" textLength="` + ml + `">` + em + `</text><text id="rlink" x="` + mx + `" y="140" transform="scale(.1)" textLength="` + ml + `">` + em + `</text>`)
	}
	w.WriteString(`</g></svg>`)
}
