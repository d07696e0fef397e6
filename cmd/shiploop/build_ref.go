package main

import (
	"context"
	"strconv"
	"strings"

	"google.golang.org/grpc"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
)

// buildRefHelp is how every command that names a build says what it takes.
const buildRefHelp = "a build id, REPOSITORY#NUMBER (acme/web#12) or a chain id"

// buildRequest is the GetBuild request for a build reference: REPO#N by
// repository and number; a build id or a chain id as the id (the builds
// service tries a build id first, then a chain's latest build).
func buildRequest(ref string) (*buildsv1.GetBuildRequest, error) {
	if r, n, ok := strings.Cut(ref, "#"); ok {
		num, err := strconv.ParseInt(n, 10, 64)
		if err != nil || num <= 0 || r == "" {
			return nil, usagef("BUILD %q: want %s", ref, buildRefHelp)
		}
		return &buildsv1.GetBuildRequest{Repository: r, Number: num}, nil
	}
	if ref == "" {
		return nil, usagef("BUILD is empty: want %s", buildRefHelp)
	}
	return &buildsv1.GetBuildRequest{Id: ref}, nil
}

// buildGetter is the part of the builds client that resolves references.
type buildGetter interface {
	GetBuild(ctx context.Context, in *buildsv1.GetBuildRequest, opts ...grpc.CallOption) (*buildsv1.GetBuildResponse, error)
}

// resolveBuild is the build a reference names (see buildRequest).
func resolveBuild(ctx context.Context, cl buildGetter, ref string) (*buildsv1.Build, error) {
	req, err := buildRequest(ref)
	if err != nil {
		return nil, err
	}
	resp, err := cl.GetBuild(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.GetBuild(), nil
}

// resolveBuildID is the id of the build a reference names, for commands
// that send a build id to a service. A plain id the builds service does
// not answer for (not found there, or builds unreachable from this
// server) goes on as it is: the service asked decides what it names.
// REPO#N that builds cannot resolve is an error.
func resolveBuildID(ctx context.Context, cl buildGetter, ref string) (string, error) {
	req, err := buildRequest(ref)
	if err != nil {
		return "", err
	}
	resp, err := cl.GetBuild(ctx, req)
	switch {
	case err == nil:
		return resp.GetBuild().GetId(), nil
	case req.GetId() != "":
		return ref, nil
	}
	return "", err
}
