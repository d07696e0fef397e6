package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// TestArtifacts: files matching a step's globs are kept with their
// checksum, listed on the build, downloadable over gRPC and HTTP; a
// symlink leading out of the workspace is refused.
func TestArtifacts(t *testing.T) {
	inst := startUp(t)
	repo := newRepo(t, map[string]string{".shiploop.yml": `steps:
  - name: package
    commands:
      - mkdir -p dist/sub
      - printf 'app-binary' > dist/app.bin
      - printf 'nested' > dist/sub/notes.txt
      - printf 'not kept' > other.txt
      - ln -s /etc/hostname dist/escape
    artifacts: ["dist/**"]
`})
	secret := inst.register(t, "acme/artifacts", repo)
	w := inst.watch(t, "acme/artifacts")
	inst.push(t, "acme/artifacts", secret, "refs/heads/main", zero, repo.git("rev-parse", "HEAD"))
	evs := w.until("build.finished", 60*time.Second)
	bf := payload(t, evs[len(evs)-1], &eventsv1.BuildFinished{})
	if bf.GetStatus() != eventsv1.BuildStatus_BUILD_STATUS_SUCCESS {
		t.Fatalf("build %v: %s", bf.GetStatus(), bf.GetError())
	}
	ctx := context.Background()
	got, err := inst.client.GetBuild(ctx, &buildsv1.GetBuildRequest{Id: bf.GetBuildId()})
	if err != nil {
		t.Fatal(err)
	}
	arts := got.GetBuild().GetArtifacts()
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	want := map[string]string{"dist/app.bin": "app-binary", "dist/sub/notes.txt": "nested"}
	if len(arts) != len(want) {
		t.Fatalf("artifacts %v, want %v", arts, want)
	}
	for _, a := range arts {
		content, ok := want[a.GetName()]
		if !ok || a.GetSize() != int64(len(content)) || a.GetSha256() != sum(content) || a.GetStep() != "package" {
			t.Errorf("artifact %v", a)
		}
	}
	log := inst.jobLog(t, got.GetBuild().GetJobIds()[0], false)
	if !strings.Contains(log, "artifact dist/escape: outside the workspace, not kept") {
		t.Errorf("log does not say the escaping symlink was refused:\n%s", log)
	}

	// gRPC download.
	st, err := inst.client.DownloadArtifact(ctx, &buildsv1.DownloadArtifactRequest{BuildId: bf.GetBuildId(), Name: "dist/app.bin"})
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	var meta *eventsv1.Artifact
	for {
		r, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.GetArtifact() != nil {
			meta = r.GetArtifact()
		}
		data = append(data, r.GetChunk()...)
	}
	if string(data) != "app-binary" || meta.GetSha256() != sum("app-binary") {
		t.Errorf("gRPC download: %q %v", data, meta)
	}
	// HTTP download.
	resp, err := http.Get(inst.HTTPURL + "/builds/" + bf.GetBuildId() + "/artifacts/dist/sub/notes.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "nested" || resp.Header.Get("Digest") != "sha-256="+sum("nested") {
		t.Errorf("HTTP download: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, err = http.Get(inst.HTTPURL + "/builds/" + bf.GetBuildId() + "/artifacts/other.txt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("a file that was not kept: HTTP %d, want 404", resp.StatusCode)
	}
}
