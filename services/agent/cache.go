package agent

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	eventsv1 "github.com/shiploop/shiploop/proto/shiploop/events/v1"
)

// CacheBucket is the Object Store bucket of dependency caches, keyed
// "<repository token>/<step>/<sha256 of the key files>".
const CacheBucket = "cache"

// cacheKey hashes the key files' names and contents; a missing key file
// counts as empty, so adding it later changes the key.
func cacheKey(dir, repo, step string, c *eventsv1.StepCache) string {
	h := sha256.New()
	paths := append([]string(nil), c.GetPaths()...)
	sort.Strings(paths)
	fmt.Fprintf(h, "%q\x00", paths) // the archive's layout follows the paths
	files := append([]string(nil), c.GetKeyFiles()...)
	sort.Strings(files)
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f)
		if b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f))); err == nil {
			h.Write(b)
		}
		h.Write([]byte{0})
	}
	return strings.NewReplacer("/", "_", ".", "_").Replace(repo) + "/" + step + "/" + hex.EncodeToString(h.Sum(nil))[:32]
}

// cacheRoots resolves the cache paths: "~/x" under home, anything else under
// the workspace. Paths that climb out of either are refused.
func cacheRoots(dir, home string, paths []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range paths {
		base, rel := dir, p
		if r, ok := strings.CutPrefix(p, "~/"); ok {
			base, rel = home, r
		}
		clean := filepath.Clean(filepath.FromSlash(rel))
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) || base == "" {
			return nil, fmt.Errorf("cache path %q is outside the workspace and the home directory", p)
		}
		out[p] = filepath.Join(base, clean)
	}
	return out, nil
}

// restoreCache unpacks a saved cache into the paths; it reports whether
// there was one.
func (r *jobRun) restoreCache(ctx context.Context, dir, home string, st *eventsv1.Step) (string, bool) {
	c := st.GetCache()
	if c == nil || len(c.GetPaths()) == 0 {
		return "", false
	}
	key := cacheKey(dir, r.job.Repository, st.Name, c)
	ctx = withoutDeadline(ctx)
	obs, err := cacheStore(ctx, r)
	if err != nil {
		r.line(st.Name, "system", fmt.Sprintf("cache %s: %v", key, err), timeNow())
		return key, false
	}
	rc, err := obs.Get(ctx, key)
	if err != nil {
		if !errors.Is(err, jetstream.ErrObjectNotFound) {
			r.line(st.Name, "system", fmt.Sprintf("cache %s: %v", key, err), timeNow())
		}
		return key, false
	}
	defer rc.Close()
	roots, err := cacheRoots(dir, home, c.GetPaths())
	if err != nil {
		r.line(st.Name, "system", err.Error(), timeNow())
		return key, false
	}
	n, err := untar(rc, roots)
	if err != nil {
		r.line(st.Name, "system", fmt.Sprintf("cache %s: restoring: %v", key, err), timeNow())
		return key, false
	}
	r.line(st.Name, "system", fmt.Sprintf("cache %s restored (%d files)", key, n), timeNow())
	return key, true
}

// saveCache packs the paths after a successful step whose cache missed.
func (r *jobRun) saveCache(ctx context.Context, dir, home, key string, st *eventsv1.Step) {
	roots, err := cacheRoots(dir, home, st.GetCache().GetPaths())
	if err != nil {
		r.line(st.Name, "system", err.Error(), timeNow())
		return
	}
	ctx = withoutDeadline(ctx)
	obs, err := cacheStore(ctx, r)
	if err != nil {
		r.line(st.Name, "system", fmt.Sprintf("cache %s: saving: %v", key, err), timeNow())
		return
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarPaths(pw, roots)) }()
	info, err := obs.Put(ctx, jetstream.ObjectMeta{Name: key}, pr)
	_ = pr.Close()
	if err != nil {
		r.line(st.Name, "system", fmt.Sprintf("cache %s: saving: %v", key, err), timeNow())
		return
	}
	r.line(st.Name, "system", fmt.Sprintf("cache %s saved (%d bytes)", key, info.Size), timeNow())
}

func cacheStore(ctx context.Context, r *jobRun) (jetstream.ObjectStore, error) {
	return r.a.cfg.Bus.ObjectStore(ctx, CacheBucket, "dependency caches")
}

// tarPaths writes the regular files and directories under each root as a
// gzipped tar whose names start with the cache path as written.
func tarPaths(w io.Writer, roots map[string]string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(roots))
	for p := range roots {
		names = append(names, p)
	}
	sort.Strings(names)
	for i, p := range names {
		root := roots[p]
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // a path that does not exist is simply not cached
			}
			info, err := d.Info()
			if err != nil || !(info.Mode().IsRegular() || info.IsDir()) {
				return nil
			}
			rel, _ := filepath.Rel(root, path)
			hdr, err := tar.FileInfoHeader(info, "")
			if err != nil {
				return err
			}
			hdr.Name = fmt.Sprintf("%d/%s", i, filepath.ToSlash(rel))
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if info.Mode().IsRegular() {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				_, err = io.Copy(tw, f)
				f.Close()
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// untar restores what tarPaths wrote into the roots (entries are named
// "<index of the path in sorted order>/<relative name>"); entries naming no
// path or climbing out of their root are skipped.
func untar(r io.Reader, roots map[string]string) (int, error) {
	names := make([]string, 0, len(roots))
	for p := range roots {
		names = append(names, p)
	}
	sort.Strings(names)
	gz, err := gzip.NewReader(r)
	if err != nil {
		return 0, err
	}
	tr := tar.NewReader(gz)
	n := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		idx, rel, ok := strings.Cut(hdr.Name, "/")
		i, err := strconv.Atoi(idx)
		known := err == nil && i >= 0 && i < len(names)
		var root string
		if known {
			root = roots[names[i]]
		}
		clean := filepath.Clean(filepath.FromSlash(rel))
		if !ok || !known || filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
			continue
		}
		target := filepath.Join(root, clean)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return n, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return n, err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(hdr.Mode)&0o777)
			if err != nil {
				return n, err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return n, err
			}
			f.Close()
			n++
		}
	}
}
