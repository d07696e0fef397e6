-- Repository history and the build page: each build's branch and event
-- (push, tag, pull_request, manual) for the filters, and the files its
-- jobs kept (artifacts and test reports) for download links.
ALTER TABLE dash_builds ADD COLUMN branch TEXT NOT NULL DEFAULT '';
ALTER TABLE dash_builds ADD COLUMN event TEXT NOT NULL DEFAULT '';
UPDATE dash_builds SET branch = substr(ref, 12) WHERE ref LIKE 'refs/heads/%';
UPDATE dash_builds SET event = 'tag' WHERE ref LIKE 'refs/tags/%';
UPDATE dash_builds SET event = 'push' WHERE event = '';
-- History pages walk these newest first, (created_at, id) being the cursor.
CREATE INDEX IF NOT EXISTS dash_builds_created ON dash_builds (created_at, id);
CREATE INDEX IF NOT EXISTS dash_builds_repo_created ON dash_builds (repository, created_at, id);
CREATE INDEX IF NOT EXISTS dash_builds_repo_branch ON dash_builds (repository, branch, created_at, id);

CREATE TABLE IF NOT EXISTS dash_files (
    build_id TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    -- artifact or report
    kind     TEXT NOT NULL,
    name     TEXT NOT NULL,
    size     {{bigint}} NOT NULL DEFAULT 0,
    -- a report's format (junit, coverage); an artifact's step
    detail   TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (build_id, job_id, kind, name)
);
