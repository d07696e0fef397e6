-- The chain id of the change that deployed a release (the deploy.started
-- event's): issue events caused by that release's errors carry it.
ALTER TABLE deploys ADD COLUMN chain_id TEXT NOT NULL DEFAULT '';
