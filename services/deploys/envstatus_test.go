package deploys

import (
	"context"
	"slices"
	"testing"

	"github.com/shiploop/shiploop/pkg/store"
	"github.com/shiploop/shiploop/pkg/store/storetest"
	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestEnvironmentSaysRollback: after a failed deploy step with on_failure:
// rollback, ListEnvironments says the current release came by rollback, from
// which release and why; before, that it came by an approved deploy, and who
// approved it.
func TestEnvironmentSaysRollback(t *testing.T) {
	storetest.Engines(t, "deploys", Migrations(), func(t *testing.T, db *store.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		repo := "acme/status"
		cfg := `environments:
  - name: production
    auto: true
    approval: {required: 1}
    on_failure: rollback
    steps: [{name: deploy, commands: [./deploy.sh]}]
`
		env := func() *deploysv1.Environment {
			t.Helper()
			envs, err := h.api.ListEnvironments(ctx, &deploysv1.ListEnvironmentsRequest{Repository: repo})
			if err != nil {
				t.Fatal(err)
			}
			return envs.GetEnvironments()[0]
		}
		approve := func(version, who string) {
			t.Helper()
			d := h.waitFor(repo, "production", version+" awaiting approval", is(version, eventsv1.DeployStatus_DEPLOY_STATUS_AWAITING_APPROVAL))
			if _, err := h.api.Approve(ctx, &deploysv1.ApproveRequest{DeployId: d.GetId(), Approver: who}); err != nil {
				t.Fatal(err)
			}
		}

		h.buildInChain(repo, "1.0.0", cfg, "chain-good")
		approve("1.0.0", "ann")
		h.run(h.nextJob(), true)
		good := h.waitFor(repo, "production", "1.0.0 deployed", is("1.0.0", eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED))
		if e := env(); e.GetCurrentRelease() != "1.0.0" || e.GetCurrentKind() != "deploy" || e.GetCurrentByRollback() || e.GetCurrentCause() != "" ||
			!slices.Equal(e.GetApprovedBy(), []string{"ann"}) || e.GetCurrentDeployId() != good.GetId() {
			t.Errorf("after 1.0.0: %+v", e)
		}

		h.buildInChain(repo, "1.1.0", cfg, "chain-bad")
		approve("1.1.0", "bob")
		h.failStep(h.nextJob(), "deploy", 3)
		h.waitFor(repo, "production", "1.1.0 failed", is("1.1.0", eventsv1.DeployStatus_DEPLOY_STATUS_FAILED))
		h.run(h.nextJob(), true)
		back := h.waitFor(repo, "production", "rollback done", func(d *deploysv1.Deployment) bool {
			return d.GetKind() == "rollback" && d.GetStatus() == eventsv1.DeployStatus_DEPLOY_STATUS_SUCCEEDED
		})
		e := env()
		const want = "rolled back from 1.1.0: deploy of 1.1.0 failed: step deploy failed: exit code 3 (on_failure: rollback)"
		if e.GetCurrentRelease() != "1.0.0" || e.GetCurrentDeployId() != back.GetId() || e.GetCurrentKind() != "rollback" || !e.GetCurrentByRollback() ||
			e.GetRolledBackRelease() != "1.1.0" || e.GetCurrentCause() != want || e.GetDeployedBy() != "auto" || len(e.GetApprovedBy()) != 0 {
			t.Errorf("after the rollback: %+v\nwant 1.0.0 by rollback, cause %q, deployed by auto, no approvers", e, want)
		}
	})
}
