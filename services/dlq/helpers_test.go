package dlq_test

import (
	"context"

	"google.golang.org/grpc/metadata"
)

func metadataCtx(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
