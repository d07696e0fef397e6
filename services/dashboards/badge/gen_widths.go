//go:build ignore

// gen_widths writes widths.bin from the width tables of the npm package
// anafanafo 2.0.0 (MIT, Metabolize LLC), the tables badge-maker 6.0.0 uses:
// verdana-11px-normal.json, verdana-10px-normal.json, verdana-10px-bold.json
// and helvetica-11px-bold.json in the directory given as the first argument.
//
//	npm pack anafanafo@2.0.0 && tar xzf anafanafo-2.0.0.tgz
//	go run gen_widths.go package/data
//
// Format, per table in that order: uvarint count, then per range uvarint
// (first - previous last), uvarint (last - first), uvarint width*100.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run gen_widths.go ANAFANAFO_DATA_DIR")
		os.Exit(2)
	}
	var out []byte
	for _, name := range []string{"verdana-11px-normal", "verdana-10px-normal", "verdana-10px-bold", "helvetica-11px-bold"} {
		data, err := os.ReadFile(filepath.Join(os.Args[1], name+".json"))
		if err != nil {
			fail(err)
		}
		var rows [][3]float64
		if err := json.Unmarshal(data, &rows); err != nil {
			fail(fmt.Errorf("%s: %w", name, err))
		}
		out = binary.AppendUvarint(out, uint64(len(rows)))
		prev := uint64(0)
		for _, r := range rows {
			first, last, w := uint64(r[0]), uint64(r[1]), math.Round(r[2]*100)
			if first < prev || last < first || math.Abs(w-r[2]*100) > 1e-6 {
				fail(fmt.Errorf("%s: range %v is out of order or not in hundredths", name, r))
			}
			out = binary.AppendUvarint(out, first-prev)
			out = binary.AppendUvarint(out, last-first)
			out = binary.AppendUvarint(out, uint64(w))
			prev = last
		}
	}
	if err := os.WriteFile("widths.bin", out, 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
