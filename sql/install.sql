-- certyo install manifest: every re-runnable object, in dependency order.
-- Applied after the migrations, in one transaction: `certyo-pg migrate`, or
-- `psql -1 -f sql/install.sql` on a database whose migrations are applied
-- (sql/dist/certyo-install.sql bundles both for psql).
\ir change_key.sql
\ir record_key.sql
\ir record_key_slow.sql
\ir record_payload.sql
\ir output_settings.sql
\ir key_match.sql
\ir record_exists.sql
\ir capture_before.sql
\ir restamp_inserts.sql
\ir capture.sql
\ir capture_key_change.sql
\ir wake.sql
\ir capture_rows.sql
\ir refuse_truncate.sql
\ir drop_triggers.sql
\ir backfill.sql
\ir backfill_step.sql
\ir enable_tracking.sql
\ir disable_tracking.sql
\ir layout.sql
\ir write_status.sql
\ir write_due.sql
\ir claim.sql
\ir ack.sql
\ir ack_and_claim.sql
\ir relay_ops.sql
\ir verification.sql
\ir backlog.sql
\ir parked.sql
\ir status.sql
\ir tracked_tables.sql
\ir backfills.sql
\ir history.sql
\ir verify.sql
\ir grants.sql
