package errortrack

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Source map upload as sentry-cli does it (src/utils/file_upload.rs,
// src/utils/chunks/ and src/api/data_types/chunking/ in getsentry/sentry-cli):
// GET chunk-upload/ for the options, POST artifactbundle/assemble/ to learn
// which chunks are missing, POST chunk-upload/ with those chunks (multipart
// parts "file" or, gzip-compressed, "file_gzip", each named by its SHA-1),
// then assemble again until the state is "ok". Chunks live in the Object
// Store bucket errortrack-chunks (a day), bundles in errortrack-bundles.

const (
	chunkBucket      = "errortrack-chunks"
	bundleBucket     = "errortrack-bundles"
	chunkSize        = 8 << 20
	chunksPerRequest = 64
	maxRequestSize   = 32 << 20
	maxBundleSize    = 256 << 20
)

var sha1Hex = regexp.MustCompile(`^[0-9a-f]{40}$`)

// artifactStores opens (creating when needed) the two buckets, bounded by
// Config.ArtifactMaxBytes each.
type artifactStores struct {
	once           sync.Mutex
	chunks, bundle jetstream.ObjectStore
}

func (s *Service) objectStores(ctx context.Context) (jetstream.ObjectStore, jetstream.ObjectStore, error) {
	s.artifacts.once.Lock()
	defer s.artifacts.once.Unlock()
	if s.artifacts.chunks != nil {
		return s.artifacts.chunks, s.artifacts.bundle, nil
	}
	limit := s.cfg.ArtifactMaxBytes
	if limit <= 0 {
		limit = 1 << 30
	}
	open := func(bucket, desc string, ttl time.Duration) (jetstream.ObjectStore, error) {
		js := s.bus.JetStream()
		obs, err := js.ObjectStore(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			obs, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket, Description: desc, Storage: jetstream.FileStorage,
				Replicas: s.cfg.Replicas, MaxBytes: limit, TTL: ttl})
			if errors.Is(err, jetstream.ErrBucketExists) {
				obs, err = js.ObjectStore(ctx, bucket)
			}
		}
		return obs, err
	}
	c, err := open(chunkBucket, "source map chunks uploaded with sentry-cli, until assembled", 24*time.Hour)
	if err != nil {
		return nil, nil, fmt.Errorf("object store %s: %w", chunkBucket, err)
	}
	b, err := open(bundleBucket, "source map bundles assembled from sentry-cli uploads", 0)
	if err != nil {
		return nil, nil, fmt.Errorf("object store %s: %w", bundleBucket, err)
	}
	s.artifacts.chunks, s.artifacts.bundle = c, b
	return c, b, nil
}

func (s *Service) serveChunkOptions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		// Relative: sentry-cli puts it under its own base URL (Config::get_api_endpoint).
		"url":              "/api/0/organizations/" + s.org() + "/chunk-upload/",
		"chunkSize":        chunkSize,
		"chunksPerRequest": chunksPerRequest,
		"maxFileSize":      maxBundleSize,
		"maxRequestSize":   maxRequestSize,
		"concurrency":      1,
		"hashAlgorithm":    "sha1",
		"compression":      []string{"gzip"},
		"accept":           []string{"release_files", "artifact_bundles", "artifact_bundles_v2", "sources"},
		"maxWait":          60,
	})
}

// serveChunkUpload stores each multipart part whose SHA-1 (of the
// decompressed bytes) matches its file name.
func (s *Service) serveChunkUpload(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestSize+(1<<20))
	mr, err := r.MultipartReader()
	if err != nil {
		apiError(w, http.StatusBadRequest, "want a multipart/form-data body of chunks")
		return
	}
	chunks, _, err := s.objectStores(ctx)
	if err != nil {
		s.storageError(w, "storing chunks", err)
		return
	}
	n := 0
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			apiError(w, http.StatusBadRequest, "reading the multipart body: "+err.Error())
			return
		}
		name, field := part.FileName(), part.FormName()
		if field != "file" && field != "file_gzip" {
			part.Close()
			continue
		}
		if n++; n > chunksPerRequest {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("at most %d chunks a request", chunksPerRequest))
			return
		}
		if !sha1Hex.MatchString(name) {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("chunk %q: the file name must be its SHA-1 checksum", name))
			return
		}
		var src io.Reader = io.LimitReader(part, chunkSize+1)
		if field == "file_gzip" {
			zr, err := gzip.NewReader(io.LimitReader(part, chunkSize+(1<<20)))
			if err != nil {
				apiError(w, http.StatusBadRequest, fmt.Sprintf("chunk %s: not gzip: %v", name, err))
				return
			}
			src = io.LimitReader(zr, chunkSize+1)
		}
		data, err := io.ReadAll(src)
		if err != nil {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("chunk %s: %v", name, err))
			return
		}
		if len(data) > chunkSize {
			apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("chunk %s is over the chunk size %d", name, chunkSize))
			return
		}
		sum := sha1.Sum(data)
		if hex.EncodeToString(sum[:]) != name {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("chunk %s: checksum mismatch", name))
			return
		}
		if _, err := chunks.PutBytes(ctx, name, data); err != nil {
			s.storageError(w, "storing chunks", err)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// assembleBody is sentry-cli's ChunkedArtifactRequest.
type assembleBody struct {
	Checksum string   `json:"checksum"`
	Chunks   []string `json:"chunks"`
	Projects []string `json:"projects"`
	Version  string   `json:"version"`
	Dist     string   `json:"dist"`
}

func assembleAnswer(w http.ResponseWriter, state string, missing []string, detail string) {
	if missing == nil {
		missing = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"state": state, "missingChunks": missing, "detail": nullable(detail)})
}

// serveAssembleBundle answers not_found with the missing chunks until all
// are uploaded, then joins them into the bundle (checked against its
// checksum) and answers ok. releases/{version}/assemble/ is the older
// per-release form of the same thing.
func (s *Service) serveAssembleBundle(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b assembleBody
	if err := decodeBody(r, &b); err != nil {
		s.storageError(w, "assembling", err)
		return
	}
	if v := r.PathValue("version"); v != "" {
		b.Version = v
	}
	if !sha1Hex.MatchString(b.Checksum) || len(b.Chunks) == 0 || len(b.Chunks) > maxBundleSize/chunkSize+1 {
		apiError(w, http.StatusBadRequest, "checksum and chunks (SHA-1 checksums) are required")
		return
	}
	for _, c := range b.Chunks {
		if !sha1Hex.MatchString(c) {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("chunk %q is not a SHA-1 checksum", c))
			return
		}
	}
	var pids []int64
	for _, slug := range b.Projects {
		p, err := s.projectBySlug(ctx, slug)
		if err != nil {
			if errors.Is(err, errNotFound) {
				apiError(w, http.StatusBadRequest, fmt.Sprintf("project %q does not exist", slug))
				return
			}
			s.storageError(w, "assembling", err)
			return
		}
		pids = append(pids, p.id)
	}
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM artifact_bundles WHERE checksum = $1`, b.Checksum).Scan(&one)
	if err == nil {
		assembleAnswer(w, "ok", nil, "")
		return
	}
	if !errors.Is(err, sql.ErrNoRows) {
		s.storageError(w, "assembling", err)
		return
	}
	chunks, bundles, err := s.objectStores(ctx)
	if err != nil {
		s.storageError(w, "assembling", err)
		return
	}
	var missing []string
	for _, c := range b.Chunks {
		if _, err := chunks.GetInfo(ctx, c); err != nil {
			if !errors.Is(err, jetstream.ErrObjectNotFound) {
				s.storageError(w, "assembling", err)
				return
			}
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		assembleAnswer(w, "not_found", missing, "")
		return
	}
	var buf bytes.Buffer
	h := sha1.New()
	for _, c := range b.Chunks {
		data, err := chunks.GetBytes(ctx, c)
		if err != nil {
			s.storageError(w, "assembling", err)
			return
		}
		if buf.Len()+len(data) > maxBundleSize {
			assembleAnswer(w, "error", nil, fmt.Sprintf("the bundle is over %d bytes", maxBundleSize))
			return
		}
		buf.Write(data)
		h.Write(data)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != b.Checksum {
		assembleAnswer(w, "error", nil, fmt.Sprintf("the chunks join to %s, not the checksum %s", got, b.Checksum))
		return
	}
	size := buf.Len()
	if err := s.indexArtifactBundle(ctx, s.db, b.Checksum, buf.Bytes()); err != nil {
		s.storageError(w, "assembling", err)
		return
	}
	if _, err := bundles.Put(ctx, jetstream.ObjectMeta{Name: b.Checksum, Headers: nil}, &buf); err != nil {
		s.storageError(w, "assembling", err)
		return
	}
	pj, _ := json.Marshal(pids)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO artifact_bundles (checksum, release, dist, projects, size, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		b.Checksum, b.Version, b.Dist, string(pj), size, time.Now().UnixNano()); err != nil {
		s.storageError(w, "assembling", err)
		return
	}
	// Chunks stay until the bucket's TTL: another bundle may share one.
	assembleAnswer(w, "ok", nil, "")
}
