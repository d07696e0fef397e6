package badge

import "encoding/json"

// Endpoint is the shields.io endpoint-badge JSON
// (https://shields.io/badges/endpoint-badge): what a badge says, for
// img.shields.io or any other renderer to draw.
type Endpoint struct {
	SchemaVersion int    `json:"schemaVersion"`
	Label         string `json:"label"`
	Message       string `json:"message"`
	Color         string `json:"color,omitempty"`
	LabelColor    string `json:"labelColor,omitempty"`
	IsError       bool   `json:"isError,omitempty"`
	Style         string `json:"style,omitempty"`
	CacheSeconds  int    `json:"cacheSeconds,omitempty"`
}

// EndpointJSON is b as endpoint JSON; isError marks a badge that reports a
// problem (an unknown repository) so shields keeps its color.
func EndpointJSON(b Badge, isError bool, cacheSeconds int) []byte {
	e := Endpoint{SchemaVersion: 1, Label: b.Label, Message: b.Message, Color: b.Color, LabelColor: b.LabelColor,
		IsError: isError, Style: string(b.Style), CacheSeconds: cacheSeconds}
	if e.Message == "" {
		e.Message = "unknown" // the schema wants a non-empty message
	}
	data, _ := json.Marshal(e) // only strings, bools and ints: cannot fail
	return data
}
