-- certyo.capture_before(): BEFORE INSERT OR UPDATE row trigger on tracked tables.
-- Stamps each real change with a new version and resets its status; lets an
-- UPDATE that changes only status columns through untouched (the relay's
-- write-back) and refuses it from anyone but the certyo owner; an UPDATE that
-- changes nothing at all is not a change.
-- SECURITY INVOKER on purpose: current_user must be the writer, not the owner.
--
-- Never assign to a field of OLD, or of a copy of it. PostgreSQL 13 to 15
-- crash (signal 11 in pfree) when PL/pgSQL replaces a record field whose
-- value comes from a column added later with a constant default (a row
-- written before the ADD COLUMN): the replaced value lives in the table's
-- cached descriptor, and PL/pgSQL frees it. Fields of NEW are assigned only
-- once NEW is known to differ from OLD, so NEW is a row the executor (or an
-- earlier trigger) built in full, never OLD handed on unchanged. Test:
-- test/sql/pg-bugs.test.ts.
create or replace function certyo.capture_before()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    if tg_op = 'UPDATE' then
        if old.certyo_record_hash is not distinct from new.certyo_record_hash
            and old.certyo_anchor_status is not distinct from new.certyo_anchor_status
            and old.certyo_verified_at is not distinct from new.certyo_verified_at
            and old.certyo_record_version is not distinct from new.certyo_record_version
        then
            -- Binary image comparison (*=) works for every type, json and xml included.
            if old operator(pg_catalog.*=) new then
                -- Nothing changed at all (set x = x): not a change, keep the status.
                return new;
            end if;
        elsif json_populate_record(old, json_build_object(
                  'certyo_record_hash', new.certyo_record_hash,
                  'certyo_anchor_status', new.certyo_anchor_status,
                  'certyo_verified_at', new.certyo_verified_at,
                  'certyo_record_version', new.certyo_record_version))
              operator(pg_catalog.*=) new
        then
            -- Only status columns changed (OLD with NEW's status is NEW).
            if current_user = (select n.nspowner::regrole::name from pg_namespace n where n.nspname = 'certyo') then
                -- Status write-back from certyo's own functions.
                return new;
            end if;
            raise exception 'certyo status columns of % are maintained by certyo', tg_relid::regclass
                using errcode = '42501',
                      detail = 'certyo_record_hash, certyo_anchor_status, certyo_verified_at and certyo_record_version are written only by the relay.',
                      hint = 'Update the row''s own columns; its status returns to pending and the new version is captured.';
        end if;
    end if;
    new.certyo_record_hash := null;
    new.certyo_anchor_status := 'pending';
    new.certyo_verified_at := null;
    new.certyo_record_version := nextval('certyo.change_seq');
    return new;
end
$$;

comment on function certyo.capture_before() is
    'BEFORE row trigger of tracked tables: versions each change, resets its status, guards the status columns.';
