-- A rollback deployment keeps what deploy.rolled_back said: the release it
-- rolled back and why, so the environments page can say its current release
-- came by rollback after deploy.finished has set reason to "deployed".
ALTER TABLE dash_deploys ADD COLUMN rolled_back_from TEXT NOT NULL DEFAULT '';
ALTER TABLE dash_deploys ADD COLUMN rollback_cause TEXT NOT NULL DEFAULT '';
