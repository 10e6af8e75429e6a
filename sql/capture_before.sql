-- certyo.capture_before_insert(): BEFORE INSERT row trigger on tracked tables;
-- certyo.capture_before(owner): BEFORE UPDATE row trigger (it still handles
-- INSERT, and no argument, for tables tracked before capture_before_insert).
-- Each stamps every real change with a new version and resets its status;
-- capture_before lets an UPDATE that changes only status columns through
-- untouched (the relay's write-back) and refuses it from anyone but the certyo
-- owner; an UPDATE that changes nothing at all is not a change.
-- SECURITY INVOKER on purpose: current_user must be the writer, not the owner.
--
-- No SET search_path clause: PostgreSQL applies and undoes one at every call,
-- which cost more than these bodies (14k of 36k instructions per inserted
-- row). Instead every function, operator, type and relation that decides
-- anything is named with its schema, so objects a writer plants on its
-- search_path (a public."=" that always answers true, say) are never used
-- (IS DISTINCT FROM would take the session's "=": not used here).
--
-- Never assign to a field of OLD, or of a copy of it. PostgreSQL 13 to 15
-- crash (signal 11 in pfree) when PL/pgSQL replaces a record field whose
-- value comes from a column added later with a constant default (a row
-- written before the ADD COLUMN): the replaced value lives in the table's
-- cached descriptor, and PL/pgSQL frees it. Fields of NEW are assigned only
-- once NEW is known to differ from OLD, so NEW is a row the executor (or an
-- earlier trigger) built in full, never OLD handed on unchanged. Test:
-- test/sql/pg-bugs.test.ts.
create or replace function certyo.capture_before_insert()
returns trigger
language plpgsql
as $$
begin
    new.certyo_record_version := pg_catalog.nextval('certyo.change_seq'::pg_catalog.regclass);
    -- Status given with the row (a copy of another tracked row, a forgery): reset.
    if new.certyo_record_hash is not null or new.certyo_verified_at is not null
        or not coalesce(new.certyo_anchor_status operator(pg_catalog.=) 'pending', false)
    then
        new.certyo_record_hash := null;
        new.certyo_anchor_status := 'pending';
        new.certyo_verified_at := null;
    end if;
    return new;
end
$$;

comment on function certyo.capture_before_insert() is
    'BEFORE INSERT row trigger of tracked tables: versions each new row and resets its status.';

create or replace function certyo.capture_before()
returns trigger
language plpgsql
as $$
begin
    if tg_op operator(pg_catalog.=) 'UPDATE' then
        -- The relay's status write-back (see enable_tracking; the argument is certyo's
        -- owner). Tables tracked before this check skip the call by a WHEN clause.
        -- (Nested IFs: PL/pgSQL initialises the whole condition it evaluates, every
        -- call of it, once per transaction, however little of it runs; a user's
        -- update evaluates only the outer tests.)
        if pg_catalog.current_setting('certyo.status_write', true) operator(pg_catalog.=) 'on' then
            if tg_nargs operator(pg_catalog.>) 0
                and pg_catalog.pg_trigger_depth() operator(pg_catalog.=) 1
                and current_user operator(pg_catalog.=) tg_argv[0]::pg_catalog.name
                and pg_catalog.pg_has_role(session_user, 'certyo_relay', 'member')
            then
                return new;
            end if;
        end if;
        -- certyo.backfill makes the update trigger skip a backfill's stamp. Set by anyone
        -- but certyo's own functions in a relay's session, it skips nothing: cleared here,
        -- before the update trigger's WHEN clause reads it.
        -- (The owner's name is a query: run only when the setting is there.)
        if pg_catalog.current_setting('certyo.backfill', true) operator(pg_catalog.<>) '' then
            if not (current_user operator(pg_catalog.=) (
                        select n.nspowner::pg_catalog.regrole::pg_catalog.name
                        from pg_catalog.pg_namespace n
                        where n.nspname operator(pg_catalog.=) 'certyo')
                    and pg_catalog.pg_has_role(session_user, 'certyo_relay', 'member'))
            then
                perform pg_catalog.set_config('certyo.backfill', '', true);
            end if;
        end if;
        -- Status unchanged (each "not distinct", spelled with pg_catalog's "=")?
        if (old.certyo_record_version operator(pg_catalog.=) new.certyo_record_version
                or (old.certyo_record_version is null and new.certyo_record_version is null))
            and (old.certyo_anchor_status operator(pg_catalog.=) new.certyo_anchor_status
                or (old.certyo_anchor_status is null and new.certyo_anchor_status is null))
            and (old.certyo_record_hash operator(pg_catalog.=) new.certyo_record_hash
                or (old.certyo_record_hash is null and new.certyo_record_hash is null))
            and (old.certyo_verified_at operator(pg_catalog.=) new.certyo_verified_at
                or (old.certyo_verified_at is null and new.certyo_verified_at is null))
        then
            -- Binary image comparison (*=) works for every type, json and xml included.
            if old operator(pg_catalog.*=) new then
                -- Nothing changed at all (set x = x): not a change, keep the status.
                return new;
            end if;
        elsif pg_catalog.json_populate_record(old, pg_catalog.json_build_object(
                  'certyo_record_hash', new.certyo_record_hash,
                  'certyo_anchor_status', new.certyo_anchor_status,
                  'certyo_verified_at', new.certyo_verified_at,
                  'certyo_record_version', new.certyo_record_version))
              operator(pg_catalog.*=) new
        then
            -- Only status columns changed (OLD with NEW's status is NEW).
            if current_user operator(pg_catalog.=) (
                   select n.nspowner::pg_catalog.regrole::pg_catalog.name
                   from pg_catalog.pg_namespace n
                   where n.nspname operator(pg_catalog.=) 'certyo')
            then
                -- Status write-back from certyo's own functions.
                return new;
            end if;
            raise exception 'certyo status columns of % are maintained by certyo', tg_relid::pg_catalog.regclass
                using errcode = '42501',
                      detail = 'certyo_record_hash, certyo_anchor_status, certyo_verified_at and certyo_record_version are written only by the relay.',
                      hint = 'Update the row''s own columns; its status returns to pending and the new version is captured.';
        end if;
    end if;
    new.certyo_record_hash := null;
    new.certyo_anchor_status := 'pending';
    new.certyo_verified_at := null;
    new.certyo_record_version := pg_catalog.nextval('certyo.change_seq'::pg_catalog.regclass);
    return new;
end
$$;

comment on function certyo.capture_before() is
    'BEFORE UPDATE row trigger of tracked tables: versions each change, resets its status, guards the status columns.';
