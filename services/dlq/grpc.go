package dlq

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dlqv1 "github.com/shiploop/shiploop/proto/shiploop/dlq/v1"
)

type grpcServer struct {
	dlqv1.UnimplementedDLQServiceServer
	s *Service
}

func grpcError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrGone):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

func (g *grpcServer) ListDeadLetters(ctx context.Context, req *dlqv1.ListDeadLettersRequest) (*dlqv1.ListDeadLettersResponse, error) {
	if req.GetLimit() < 0 {
		return nil, status.Error(codes.InvalidArgument, "limit: must not be negative")
	}
	ls, err := g.s.List(ctx, req.GetConsumer(), int(req.GetLimit()))
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &dlqv1.ListDeadLettersResponse{}
	for _, l := range ls {
		d := l.DeadLetter
		d.Headers, d.Data = nil, nil
		resp.DeadLetters = append(resp.DeadLetters, d)
	}
	return resp, nil
}

func (g *grpcServer) GetDeadLetter(ctx context.Context, req *dlqv1.GetDeadLetterRequest) (*dlqv1.GetDeadLetterResponse, error) {
	if req.GetSeq() == 0 {
		return nil, status.Error(codes.InvalidArgument, "seq: the DLQ sequence is required (from `shiploop dlq ls`)")
	}
	l, err := g.s.Get(ctx, req.GetSeq())
	if err != nil {
		return nil, grpcError(err)
	}
	return &dlqv1.GetDeadLetterResponse{DeadLetter: l.DeadLetter}, nil
}

func (g *grpcServer) ReplayDeadLetter(ctx context.Context, req *dlqv1.ReplayDeadLetterRequest) (*dlqv1.ReplayDeadLetterResponse, error) {
	if req.GetSeq() == 0 {
		return nil, status.Error(codes.InvalidArgument, "seq: the DLQ sequence is required (from `shiploop dlq ls`)")
	}
	resp, err := g.s.Replay(ctx, req.GetSeq())
	if err != nil {
		return nil, grpcError(err)
	}
	return resp, nil
}
