-- Where the build's jobs fetch it from (build.created's clone_url): deploy
-- jobs use it, and the repositories table (from change.pushed) only for
-- builds recorded before it was kept, so a change.pushed redelivered after
-- its build's events no longer leaves a deploy job without a clone URL.
ALTER TABLE builds ADD COLUMN clone_url TEXT NOT NULL DEFAULT '';
