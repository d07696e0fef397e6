-- The repository's version control as build.created says ("hg" for
-- Mercurial, "" for git), so deploy jobs fetch the release the right way.
ALTER TABLE builds ADD COLUMN vcs TEXT NOT NULL DEFAULT '';
