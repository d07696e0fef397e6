-- A schedule may run a runbook instead of the pipeline (.shiploop.yml
-- schedules[].runbook): its slot then publishes runbook.requested, which
-- deploys runs. environment overrides the runbook's; options is the JSON
-- object of its options as written.
ALTER TABLE schedules ADD COLUMN runbook TEXT NOT NULL DEFAULT '';
ALTER TABLE schedules ADD COLUMN environment TEXT NOT NULL DEFAULT '';
ALTER TABLE schedules ADD COLUMN options TEXT NOT NULL DEFAULT '';
