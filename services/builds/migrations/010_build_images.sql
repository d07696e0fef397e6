-- Images a build's jobs produced (produces: {image: NAME} on a step), as
-- job.finished reported them: the image ID (sha256:...) on the agent's
-- Docker engine. Build.images; deploys records them from the same event.
CREATE TABLE IF NOT EXISTS build_images (
    build_id TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    name     TEXT NOT NULL,
    image_id TEXT NOT NULL,
    PRIMARY KEY (job_id, name)
);
CREATE INDEX IF NOT EXISTS build_images_build ON build_images (build_id);
