-- An attachment larger than attachmentInlineMax (attachments.go) is kept in
-- the errortrack-attachments Object Store bucket: object names it and data
-- is empty. size is the attachment's length either way.
ALTER TABLE attachments ADD COLUMN object TEXT NOT NULL DEFAULT '';
ALTER TABLE attachments ADD COLUMN size {{bigint}} NOT NULL DEFAULT 0;
UPDATE attachments SET size = LENGTH(data) WHERE true;
