-- Images the build's jobs produced (produces: {image: NAME}), from
-- job.finished: a JSON object name -> image ID (sha256:...), '' for none.
-- Deploy jobs of the build get them as SHIPLOOP_IMAGE_<NAME> (images.go).
ALTER TABLE builds ADD COLUMN images TEXT NOT NULL DEFAULT '';
