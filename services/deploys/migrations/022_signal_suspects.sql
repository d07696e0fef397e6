-- The suspect commits errortrack named in an issue.opened/regressed event
-- (best match first): a JSON array of {sha, author, message}, '' for none.
-- Verification's failure reason names the top ones (verify.go).
ALTER TABLE signals ADD COLUMN suspects TEXT NOT NULL DEFAULT '';
