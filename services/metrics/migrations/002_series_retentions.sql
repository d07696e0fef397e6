-- The retentions a series was created with ("10:86400,60:2592000", seconds),
-- so that a later change to the storage schemas does not reinterpret the
-- chunks it already has (whisper files keep theirs the same way). Empty for
-- series recorded before this column: they keep the schema that matches.
ALTER TABLE series ADD COLUMN retentions TEXT NOT NULL DEFAULT '';
