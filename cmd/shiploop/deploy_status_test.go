package main

import (
	"testing"

	deploysv1 "github.com/shiploop/shiploop/proto/shiploop/deploys/v1"
)

// TestEnvHow: deploy status says a release came back by rollback, and why.
func TestEnvHow(t *testing.T) {
	cause := "rolled back from 1.1.0: verification failed: http_status(https://app/healthz) == 200: got 500"
	for _, tc := range []struct {
		env          *deploysv1.Environment
		release, how string
	}{
		{&deploysv1.Environment{}, "-", "-"},
		{&deploysv1.Environment{CurrentRelease: "1.0.0", CurrentKind: "deploy"}, "1.0.0", "deploy"},
		{&deploysv1.Environment{CurrentRelease: "1.0.0", CurrentKind: "rollback", CurrentByRollback: true, CurrentCause: cause, RolledBackRelease: "1.1.0"}, "1.0.0 (rollback)", cause},
	} {
		if release, how := envHow(tc.env); release != tc.release || how != tc.how {
			t.Errorf("envHow(%v) = %q, %q; want %q, %q", tc.env, release, how, tc.release, tc.how)
		}
	}
}
