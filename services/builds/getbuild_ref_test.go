package builds

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestGetBuildByAnyReference: GetBuild finds a build by its id, by
// repository and number (REPO#N in the CLI) and by its change's chain id;
// an unknown reference is NotFound.
func TestGetBuildByAnyReference(t *testing.T) {
	storetest.Engines(t, "builds", nil, func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		dir, sha := gitRepo(t, map[string]string{".shiploop.yml": "steps:\n  - name: ok\n    commands: [true]\n"})
		if _, err := h.api.RegisterRepository(ctx, &buildsv1.RegisterRepositoryRequest{Name: "acme/refs", CloneUrl: dir}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.acceptChange(ctx, &eventsv1.Change{Kind: eventsv1.ChangeKind_CHANGE_KIND_PUSH, Forge: "github", DeliveryId: "refs-1",
			Repository: "acme/refs", CloneUrl: dir, Ref: "refs/heads/main", Branch: "main", After: sha}); err != nil {
			t.Fatal(err)
		}
		id := h.nextJob(ctx).GetBuildId()
		byID, err := h.api.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: id})
		if err != nil || byID.GetBuild().GetChainId() == "" || byID.GetBuild().GetChainId() == id {
			t.Fatalf("GetBuild(%s) = %v, %v; want a build with its own chain id", id, byID.GetBuild(), err)
		}
		for name, req := range map[string]*buildsv1.GetBuildRequest{
			"REPO#N": {Repository: "acme/refs", Number: byID.GetBuild().GetNumber()},
			"chain":  {Id: byID.GetBuild().GetChainId()},
		} {
			got, err := h.api.GetBuild(ctx, req)
			if err != nil || got.GetBuild().GetId() != id {
				t.Errorf("GetBuild by %s = %v, %v; want build %s", name, got.GetBuild(), err, id)
			}
		}
		if _, err := h.api.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: "no-such-build"}); status.Code(err) != codes.NotFound {
			t.Errorf("GetBuild(no-such-build) = %v, want NotFound", err)
		}
	})
}
