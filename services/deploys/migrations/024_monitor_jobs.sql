-- A command monitor's check runs as a job on an agent: job_id is the job
-- of the check in flight ('' when none). job.finished records its outcome;
-- a job still out when the monitor is next due is canceled and the check
-- recorded UNKNOWN.
ALTER TABLE monitors ADD COLUMN job_id TEXT NOT NULL DEFAULT '';
