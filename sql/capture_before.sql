-- certyo.capture_before(): BEFORE INSERT OR UPDATE row trigger on tracked tables.
-- Stamps each real change with a new version and resets its status; lets an
-- UPDATE that changes only status columns through untouched (the relay's
-- write-back) and refuses it from anyone but the certyo owner; an UPDATE that
-- changes nothing at all is not a change.
-- SECURITY INVOKER on purpose: current_user must be the writer, not the owner.
create or replace function certyo.capture_before()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_old record;
begin
    if tg_op = 'UPDATE' then
        -- Binary image comparison (*=) works for every type, json and xml included.
        v_old := old;
        v_old.certyo_record_hash := new.certyo_record_hash;
        v_old.certyo_anchor_status := new.certyo_anchor_status;
        v_old.certyo_verified_at := new.certyo_verified_at;
        v_old.certyo_record_version := new.certyo_record_version;
        if v_old operator(pg_catalog.*=) new then
            if old.certyo_record_hash is not distinct from new.certyo_record_hash
                and old.certyo_anchor_status is not distinct from new.certyo_anchor_status
                and old.certyo_verified_at is not distinct from new.certyo_verified_at
                and old.certyo_record_version is not distinct from new.certyo_record_version
            then
                -- Nothing changed at all (set x = x): not a change, keep the status.
                return new;
            elsif current_user = (select n.nspowner::regrole::name from pg_namespace n where n.nspname = 'certyo') then
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
