-- A MAC keyed with the application's secret over a refresh token's hash, user and family:
-- a row written with database access alone (a session for someone else) does not verify.
-- Rows from before it have none and no longer refresh: their users sign in once more.
ALTER TABLE refresh_tokens ADD COLUMN seal BLOB;
