package flags

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flagsv1 "github.com/shiploop/shiploop/proto/shiploop/flags/v1"
	"github.com/shiploop/shiploop/services/flags/eval"
)

// RegisterGRPC serves FlagService on g.
func (s *Service) RegisterGRPC(g grpc.ServiceRegistrar) {
	flagsv1.RegisterFlagServiceServer(g, &grpcServer{s: s})
}

type grpcServer struct {
	flagsv1.UnimplementedFlagServiceServer
	s *Service
}

func grpcErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func (g *grpcServer) SetFlag(ctx context.Context, req *flagsv1.SetFlagRequest) (*flagsv1.SetFlagResponse, error) {
	if req.GetFlag() == nil {
		return nil, status.Error(codes.InvalidArgument, "flag: required")
	}
	if err := eval.Validate(req.GetFlag()); err != nil {
		return nil, status.Error(codes.InvalidArgument, "flag."+err.Error())
	}
	f, err := g.s.Set(ctx, req.GetFlag(), req.GetBy())
	if err != nil {
		return nil, grpcErr(err)
	}
	return &flagsv1.SetFlagResponse{Flag: f}, nil
}

func (g *grpcServer) GetFlag(ctx context.Context, req *flagsv1.GetFlagRequest) (*flagsv1.GetFlagResponse, error) {
	f, err := g.s.Get(ctx, req.GetKey(), req.GetEnvironment())
	if err != nil {
		return nil, grpcErr(err)
	}
	return &flagsv1.GetFlagResponse{Flag: f}, nil
}

func (g *grpcServer) ListFlags(ctx context.Context, req *flagsv1.ListFlagsRequest) (*flagsv1.ListFlagsResponse, error) {
	fs, err := g.s.List(ctx, req.GetEnvironment())
	if err != nil {
		return nil, grpcErr(err)
	}
	return &flagsv1.ListFlagsResponse{Flags: fs}, nil
}

func (g *grpcServer) DeleteFlag(ctx context.Context, req *flagsv1.DeleteFlagRequest) (*flagsv1.DeleteFlagResponse, error) {
	if err := g.s.Delete(ctx, req.GetKey(), req.GetEnvironment(), req.GetBy()); err != nil {
		return nil, grpcErr(err)
	}
	return &flagsv1.DeleteFlagResponse{}, nil
}
