-- Suspect commits without any upload: the commit each deploy ran, and the
-- commits every push brought (from change.pushed), so that a release's
-- commits are those between the previous deploy's commit and its own.
ALTER TABLE deploys ADD COLUMN commit_sha TEXT NOT NULL DEFAULT '';

CREATE TABLE IF NOT EXISTS pushes (
    repository  TEXT NOT NULL,
    after_sha   TEXT NOT NULL,
    before_sha  TEXT NOT NULL,
    -- [{"SHA","Message","Author","Files"}], oldest first, as forges list them.
    commits     TEXT NOT NULL,
    received_at {{bigint}} NOT NULL,
    PRIMARY KEY (repository, after_sha)
);
