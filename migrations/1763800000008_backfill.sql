-- Up Migration
-- Backfills: sending the rows a tracked table already had (see sql/backfill.sql).
-- One row per table, the latest backfill asked for; the relay's steps move it
-- forward, each in its own short transaction, so a killed relay or a restarted
-- server resumes after the last chunk committed.
create table certyo.backfill (
    table_id integer primary key,
    -- Rows whose version is below this one (or NULL: never captured) are sent;
    -- every change captured since the backfill was asked for has a higher one.
    below_version bigint not null,
    -- The key of the last row done, as text per key column (NULL: none yet).
    after_key text[],
    -- Highest versions the last two steps stamped: the next step waits until a
    -- claim has leased the earlier one (certyo.leased_upto), so at most about two
    -- chunks wait in the outbox ahead of live changes, and delivery never runs dry.
    last_version bigint,
    prior_version bigint,
    rows_estimated bigint,
    rows_done bigint not null default 0,
    chunks_done integer not null default 0,
    requested_at timestamptz not null default pg_catalog.now(),
    started_at timestamptz,
    last_step_at timestamptz,
    finished_at timestamptz,
    -- 'finished', or why it stopped early ('tracking disabled').
    outcome text
);

-- Down Migration
drop table certyo.backfill;
