-- The caller a job acts for (actor, permissions, app), taken from its credential when it
-- was enqueued: a payload says only what to do, never on whose behalf.
ALTER TABLE jobs ADD COLUMN owner jsonb;
