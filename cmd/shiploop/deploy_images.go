package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
)

// printEnvImages follows deploy status's table with the images of each
// environment's current release (the build's produces: images, as its
// deploy job got them in SHIPLOOP_IMAGE*); nothing without any.
func printEnvImages(w io.Writer, envs []*deploysv1.Environment) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := false
	for _, e := range envs {
		for _, name := range slices.Sorted(maps.Keys(e.GetCurrentImages())) {
			if !header {
				fmt.Fprintln(tw, "\nENVIRONMENT\tIMAGE\tID")
				header = true
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", e.GetName(), name, e.GetCurrentImages()[name])
		}
	}
	return tw.Flush()
}

// describeImages is deploy show's line per image of the deployed build.
func describeImages(w io.Writer, images map[string]string) {
	for _, name := range slices.Sorted(maps.Keys(images)) {
		fmt.Fprintf(w, "  image      %s %s\n", name, images[name])
	}
}
