-- Images a build's jobs produced (job.finished images: name -> image ID
-- sha256:...), so the environments pages show the current release's.
CREATE TABLE IF NOT EXISTS dash_build_images (
    build_id TEXT NOT NULL,
    name     TEXT NOT NULL,
    image_id TEXT NOT NULL,
    PRIMARY KEY (build_id, name)
);
