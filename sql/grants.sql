-- Grants: applied last, every time. Nothing in certyo is executable or readable
-- by PUBLIC except what every writer of a tracked table needs: schema USAGE and
-- the version sequence (the BEFORE trigger runs as the writer and draws from it).
revoke all on all functions in schema certyo from public;
revoke all on all tables in schema certyo from public;
revoke all on all sequences in schema certyo from public;

grant usage on schema certyo to public;
grant usage on sequence certyo.change_seq to public;

-- certyo_admin: table owners who turn tracking on and off.
grant execute on function certyo.enable_tracking(regclass, name[], text, text[], name[], boolean) to certyo_admin;
grant execute on function certyo.disable_tracking(regclass, boolean) to certyo_admin;
grant execute on function certyo.capture_before_insert(), certyo.capture_before(), certyo.capture(), certyo.capture_rows(), certyo.capture_key_change(),
    certyo.wake(), certyo.refuse_truncate() to certyo_admin;
grant execute on function certyo.drop_triggers(regclass) to certyo_admin;
grant select, insert, update on certyo.tracked_table to certyo_admin;
grant execute on function certyo.backfill(regclass) to certyo_admin;
grant select, insert, update on certyo.backfill to certyo_admin;

grant execute on function certyo.retry_parked(regclass, text) to certyo_admin;
grant execute on function certyo.flag_tampered(regclass, text[], bigint[]), certyo.flag_deleted(regclass, text[], bigint[])
    to certyo_admin;

-- certyo_relay: the sidecar's verbs, nothing else.
grant execute on function certyo.claim(uuid, integer, interval, bigint), certyo.ack(uuid, bigint[], text[], timestamptz[], text[], text[], integer[], text[]),
    certyo.ack_and_claim(uuid, bigint[], text[], timestamptz[], text[], text[], integer[], text[], integer, interval, bigint),
    certyo.release(uuid), certyo.park(uuid, bigint[], text[]), certyo.relay_wait(uuid), certyo.relay_busy(uuid), certyo.writers_in_flight(uuid),
    certyo.claim_verification(uuid, integer, interval, interval), certyo.settle_verification(uuid, jsonb),
    certyo.backfill_step(integer, boolean), certyo.write_due(integer), certyo.layout_of(integer, text[])
    to certyo_relay;

-- Everyone who watches: the views.
grant select on certyo.backlog, certyo.tracked_tables, certyo.parked, certyo.status, certyo.backfills to certyo_reader, certyo_admin, certyo_relay;

-- The tamper sweep and record history: run with the caller's own privileges on
-- the tracked tables; they read receipts and which outbox changes exist (not
-- their payloads).
grant execute on function certyo.verify(regclass, text, boolean), certyo.record_history(regclass, text, boolean),
    certyo.proof_json(bytea) to certyo_reader, certyo_admin, certyo_relay;
grant select on certyo.history, certyo.receipt, certyo.anchor, certyo.layout to certyo_reader, certyo_admin, certyo_relay;
grant execute on function certyo.renders_alike(text, text) to certyo_reader, certyo_admin, certyo_relay;
grant select (id, table_id, op, record_id, changed_at, parked_at, last_error) on certyo.outbox
    to certyo_reader, certyo_admin;
