package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiploop/shiploop/pkg/bus"
	"github.com/shiploop/shiploop/pkg/glob"
	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// findArtifacts lists the regular files under root matching any glob, as
// slash paths relative to root. Files reached through a symlink that leads
// out of the workspace are refused.
func findArtifacts(root string, globs []string) (files []string, refused []string, err error) {
	for _, g := range globs {
		if path.IsAbs(g) || strings.HasPrefix(path.Clean(g), "..") {
			refused = append(refused, g)
		}
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, refused, err
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		matched := false
		for _, g := range globs {
			if glob.Match(path.Clean(g), rel) {
				matched = true
				break
			}
		}
		if !matched {
			return nil
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil || !strings.HasPrefix(real, realRoot+string(filepath.Separator)) {
			refused = append(refused, rel)
			return nil
		}
		if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		files = append(files, rel)
		return nil
	})
	sort.Strings(files)
	return files, refused, err
}

// ArtifactBucket is the Object Store bucket of artifacts, keyed
// "<job id>/<path>".
const ArtifactBucket = "artifacts"

// artifactStore opens the artifacts bucket, trying again while JetStream
// does not answer (a leader election in a cluster).
func artifactStore(ctx context.Context, b *bus.Bus) (jetstream.ObjectStore, error) {
	var obs jetstream.ObjectStore
	err := persist(ctx, func() error {
		var err error
		obs, err = b.ObjectStore(ctx, ArtifactBucket, "build artifacts")
		return err
	})
	return obs, err
}

// uploadArtifacts stores a step's artifacts and returns their records.
func (r *jobRun) uploadArtifacts(ctx context.Context, dir string, st *eventsv1.Step) ([]*eventsv1.Artifact, error) {
	files, refused, err := findArtifacts(dir, st.Artifacts)
	for _, f := range refused {
		r.line(st.Name, "system", fmt.Sprintf("artifact %s: outside the workspace, not kept", f), timeNow())
	}
	if err != nil || len(files) == 0 {
		return nil, err
	}
	obs, err := artifactStore(ctx, r.a.cfg.Bus)
	if err != nil {
		return nil, err
	}
	var out []*eventsv1.Artifact
	for _, rel := range files {
		a, err := putArtifact(ctx, obs, filepath.Join(dir, filepath.FromSlash(rel)), r.job.JobId+"/"+rel)
		if err != nil {
			return out, fmt.Errorf("artifact %s: %w", rel, err)
		}
		a.Name, a.Step = rel, st.Name
		out = append(out, a)
		r.line(st.Name, "system", fmt.Sprintf("kept artifact %s (%d bytes, sha256 %s)", rel, a.Size, a.Sha256[:12]), timeNow())
	}
	return out, nil
}

// putArtifact stores a file, trying again for a while if JetStream does
// not take it (a leader election, say).
func putArtifact(ctx context.Context, obs jetstream.ObjectStore, file, key string) (*eventsv1.Artifact, error) {
	var a *eventsv1.Artifact
	err := persist(ctx, func() error {
		f, err := os.Open(file)
		if err != nil {
			return permanentError{err}
		}
		defer f.Close()
		h := sha256.New()
		info, err := obs.Put(ctx, jetstream.ObjectMeta{Name: key}, io.TeeReader(f, h))
		if err != nil {
			return err
		}
		a = &eventsv1.Artifact{Size: int64(info.Size), Sha256: hex.EncodeToString(h.Sum(nil)), Key: key}
		return nil
	})
	return a, err
}
