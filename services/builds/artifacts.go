package builds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	buildsv1 "github.com/shiploop/shiploop/proto/shiploop/builds/v1"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// artifactBucket is where agents keep artifacts ("<job id>/<path>").
const artifactBucket = "artifacts"

// findArtifact looks an artifact of a build up by name (and job).
func (s *Service) findArtifact(ctx context.Context, buildID, jobID, name string) (*eventsv1.Artifact, error) {
	q := `SELECT name, step, size, sha256, object_key FROM artifacts WHERE build_id = $1 AND name = $2`
	args := []any{buildID, name}
	if jobID != "" {
		q += ` AND job_id = $3`
		args = append(args, jobID)
	}
	q += ` ORDER BY job_id LIMIT 1`
	a := &eventsv1.Artifact{}
	err := s.db.QueryRowContext(ctx, q, args...).Scan(&a.Name, &a.Step, &a.Size, &a.Sha256, &a.Key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	return a, err
}

func (s *Service) openArtifact(ctx context.Context, a *eventsv1.Artifact) (io.ReadCloser, error) {
	obs, err := s.bus.JetStream().ObjectStore(ctx, artifactBucket)
	if err != nil {
		return nil, err
	}
	return obs.Get(ctx, a.Key)
}

func (g *grpcServer) DownloadArtifact(req *buildsv1.DownloadArtifactRequest, stream grpc.ServerStreamingServer[buildsv1.DownloadArtifactResponse]) error {
	if req.GetBuildId() == "" {
		return invalid("build_id", "required")
	}
	if req.GetName() == "" {
		return invalid("name", "required")
	}
	ctx := stream.Context()
	a, err := g.s.findArtifact(ctx, req.GetBuildId(), req.GetJobId(), req.GetName())
	if errors.Is(err, errNotFound) {
		return status.Errorf(codes.NotFound, "build %s has no artifact %q", req.GetBuildId(), req.GetName())
	}
	if err != nil {
		return status.Errorf(codes.Unavailable, "reading artifacts: %v", err)
	}
	r, err := g.s.openArtifact(ctx, a)
	if err != nil {
		return status.Errorf(codes.Unavailable, "opening artifact %s: %v", a.Name, err)
	}
	defer r.Close()
	if err := stream.Send(&buildsv1.DownloadArtifactResponse{Artifact: a}); err != nil {
		return err
	}
	buf := make([]byte, 128<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if err := stream.Send(&buildsv1.DownloadArtifactResponse{Chunk: buf[:n]}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Unavailable, "reading artifact %s: %v", a.Name, err)
		}
	}
}

// serveArtifact answers GET /builds/{id}/artifacts/{name...}.
func (s *Service) serveArtifact(w http.ResponseWriter, r *http.Request) {
	a, err := s.findArtifact(r.Context(), r.PathValue("id"), r.URL.Query().Get("job"), r.PathValue("name"))
	if errors.Is(err, errNotFound) {
		http.Error(w, fmt.Sprintf("build %s has no artifact %q", r.PathValue("id"), r.PathValue("name")), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "storage unavailable, retry later", http.StatusServiceUnavailable)
		return
	}
	rc, err := s.openArtifact(r.Context(), a)
	if err != nil {
		http.Error(w, "artifact store unavailable, retry later", http.StatusServiceUnavailable)
		return
	}
	defer rc.Close()
	ct := mime.TypeByExtension(path.Ext(a.Name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.FormatInt(a.Size, 10))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(a.Name)}))
	w.Header().Set("Digest", "sha-256="+a.Sha256)
	_, _ = io.Copy(w, rc)
}
