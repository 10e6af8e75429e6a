-- certyo.enable_tracking(target, ...): start capturing a table's changes.
-- Adds the status columns, registers the table and (re)creates its triggers.
-- Calling it again with the same arguments changes nothing; with other
-- arguments it updates the configuration. SECURITY INVOKER: the caller must
-- own the table (it is altered) and hold certyo_admin (or own certyo).
create or replace function certyo.enable_tracking(
    target regclass,
    key_columns name[] default null,
    collection text default null,
    operations text[] default array['insert', 'update', 'delete'],
    exclude_columns name[] default '{}',
    backfill boolean default false
)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_rel record;
    v_key_names name[];
    v_key_attnums smallint[];
    v_ops text[];
    v_table_id integer;
    v_bad text;
    v_args text;
    v_part regclass;
    v_certyo_owner oid;
begin
    select c.oid, c.relkind, c.relpersistence, c.relispartition, c.relowner,
           n.nspname as schema_name, c.relname as table_name
    into v_rel
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where c.oid = target;

    if v_rel.relkind not in ('r', 'p') then
        raise exception '% is not a table', target
            using errcode = '42809', hint = 'certyo tracks ordinary and partitioned tables.';
    end if;
    if v_rel.relispartition then
        raise exception '% is a partition', target
            using errcode = '42809',
                  hint = 'Track the partitioned parent table: its changes include every partition''s.';
    end if;
    if v_rel.relpersistence = 't' then
        raise exception '% is a temporary table', target using errcode = '42809';
    end if;
    if v_rel.schema_name = 'certyo' then
        raise exception 'certyo''s own tables cannot be tracked' using errcode = '42809';
    end if;
    if not pg_has_role(current_user, v_rel.relowner, 'USAGE') then
        raise exception 'must be the owner of % to enable tracking', target
            using errcode = '42501',
                  hint = 'Run it as the table''s owner (granted certyo_admin), or as a superuser.';
    end if;

    -- Record key: the given columns, else the primary key.
    if key_columns is null then
        select array_agg(a.attname order by k.n), array_agg(a.attnum order by k.n)
        into v_key_names, v_key_attnums
        from pg_index i
        cross join lateral unnest(i.indkey) with ordinality as k(attnum, n)
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
        where i.indrelid = target and i.indisprimary;
        if v_key_names is null then
            raise exception '% has no primary key', target
                using errcode = '42P10',
                      detail = 'Certyo identifies each record by a key; certyo uses the primary key unless told otherwise.',
                      hint = format('Add a primary key, or name NOT NULL columns that identify a row: select certyo.enable_tracking(%L, key_columns => ''{col1,col2}'');', target::text);
        end if;
    else
        if cardinality(key_columns) = 0 then
            raise exception 'key_columns is empty' using errcode = '22023';
        end if;
        select array_agg(a.attnum order by k.n), string_agg(quote_ident(k.col), ', ') filter (where a.attnum is null)
        into v_key_attnums, v_bad
        from unnest(key_columns) with ordinality as k(col, n)
        left join pg_attribute a on a.attrelid = target and a.attname = k.col and a.attnum > 0 and not a.attisdropped;
        if v_bad is not null then
            raise exception 'key column(s) % not found in %', v_bad, target using errcode = '42703';
        end if;
        select string_agg(quote_ident(a.attname), ', ')
        into v_bad
        from pg_attribute a
        where a.attrelid = target and a.attnum = any (v_key_attnums) and not a.attnotnull;
        if v_bad is not null then
            raise exception 'key column(s) % of % may be NULL', v_bad, target
                using errcode = '23502',
                      detail = 'A record id must identify the row, so key columns must be NOT NULL.',
                      hint = 'Add NOT NULL to those columns, or choose other key columns.';
        end if;
        v_key_names := key_columns;
    end if;

    if operations is null or cardinality(operations) = 0
        or not (array(select lower(o) from unnest(operations) as o) <@ array['insert', 'update', 'delete'])
    then
        raise exception 'operations must be a non-empty subset of {insert,update,delete}, got %', operations
            using errcode = '22023';
    end if;
    v_ops := array(select distinct lower(o) from unnest(operations) as o order by 1);

    select string_agg(quote_ident(e.col), ', ')
    into v_bad
    from unnest(coalesce(exclude_columns, '{}')) as e(col)
    where e.col = any (v_key_names)
        or e.col like 'certyo\_%'
        or not exists (
            select from pg_attribute a
            where a.attrelid = target and a.attname = e.col and a.attnum > 0 and not a.attisdropped
        );
    if v_bad is not null then
        raise exception 'cannot exclude column(s) % of %', v_bad, target
            using errcode = '22023',
                  hint = 'Excluded columns must exist and must be neither key columns nor certyo status columns.';
    end if;

    if collection is not null and length(btrim(collection)) = 0 then
        raise exception 'collection must not be empty' using errcode = '22023';
    end if;

    -- Status columns, without a table rewrite. One list: add the missing ones, refuse
    -- same-named columns of another type. A default is set after the column is added,
    -- so rows already there read NULL (never captured) and the catalog keeps no
    -- 'missing value' for them: on PostgreSQL 13 to 15 a PL/pgSQL trigger that assigns
    -- a field holding such a value crashes the server (see capture_before.sql).
    select string_agg(format('add column %I %s', c.name, c.type)
                      || case when c.def <> '' then format(', alter column %I set%s', c.name, c.def) else '' end,
                      ', ' order by c.n) filter (where a.attnum is null),
           string_agg(format('%I is %s', c.name, format_type(a.atttypid, a.atttypmod)), ', ') filter (where a.atttypid <> c.type)
    into v_args, v_bad
    from (values (1, 'certyo_record_hash', 'text'::regtype, ''),
                 (2, 'certyo_anchor_status', 'text'::regtype, ' default ''pending'''),
                 (3, 'certyo_verified_at', 'timestamptz'::regtype, ''),
                 (4, 'certyo_record_version', 'bigint'::regtype, '')) as c(n, name, type, def)
    left join pg_attribute a on a.attrelid = target and a.attname = c.name and not a.attisdropped;
    if v_bad is not null then
        raise exception '% already has a column with a certyo status column''s name but another type: %', target, v_bad
            using errcode = '42804', hint = 'Rename or drop that column, then enable tracking again.';
    end if;
    if v_args is not null then
        execute format('alter table %I.%I %s', v_rel.schema_name, v_rel.table_name, v_args);
    end if;

    -- Register (or update) the table.
    update certyo.tracked_table t
    set schema_name = v_rel.schema_name,
        table_name = v_rel.table_name,
        collection = coalesce(enable_tracking.collection, t.collection),
        key_columns = v_key_names,
        key_attnums = v_key_attnums,
        operations = v_ops,
        exclude_columns = coalesce(enable_tracking.exclude_columns, '{}')
    where t.relid = target and t.active
    returning t.table_id into v_table_id;
    if v_table_id is null then
        insert into certyo.tracked_table (relid, schema_name, table_name, collection, key_columns, key_attnums, operations, exclude_columns)
        values (target, v_rel.schema_name, v_rel.table_name,
                coalesce(enable_tracking.collection, v_rel.schema_name || '.' || v_rel.table_name),
                v_key_names, v_key_attnums, v_ops, coalesce(enable_tracking.exclude_columns, '{}'))
        returning table_id into v_table_id;
    end if;

    -- certyo's functions run as the owner of schema certyo and write status
    -- back by key and version: give that role the key and status columns only (nothing
    -- to do when it owns the table or is a superuser).
    select n.nspowner into v_certyo_owner from pg_namespace n where n.nspname = 'certyo';
    if v_certyo_owner <> v_rel.relowner and not (select r.rolsuper from pg_roles r where r.oid = v_certyo_owner) then
        execute format('grant select (%s), update (certyo_record_hash, certyo_anchor_status, certyo_verified_at, certyo_record_version) on %I.%I to %I',
                       (select string_agg(quote_ident(k), ', ')
                        from unnest(v_key_names || array['certyo_record_version', 'certyo_record_hash', 'certyo_anchor_status', 'certyo_verified_at']::name[]) as k),
                       v_rel.schema_name, v_rel.table_name, v_certyo_owner::regrole::name);
    end if;

    -- Triggers: dropped and created again, so the key names they carry are current.
    perform certyo.drop_triggers(target);
    v_args := (select string_agg(quote_literal(a), ', ')
               from unnest(array[v_table_id::text, case v_rel.relkind when 'p' then 'partitioned' else 'table' end]
                           || v_key_names::text[]) as a);
    -- No BEFORE trigger has a WHEN clause: PostgreSQL reads a WHEN clause back from
    -- its stored text in every statement (this one cost a single-row UPDATE more than
    -- the trigger it guarded). capture_before() lets the relay's status write-back
    -- through at its first line instead: write_status runs as certyo's owner with
    -- certyo.status_write on, at trigger depth 0 (an update a user's trigger makes from
    -- inside it is depth 1: versioned as usual), in a session of a certyo_relay member.
    -- Anyone can set the setting, and an application's SECURITY DEFINER function may run
    -- as the same owner (a superuser, say): the session check keeps such a call from
    -- skipping capture. Other write-backs (the tamper sweep's) take the full trigger, which
    -- accepts them. The owner's name is fixed here (the trigger's argument): after certyo
    -- changes owner, write-backs take the full trigger until tracking is enabled again.
    execute format('create trigger certyo_before_insert before insert on %I.%I for each row'
                   ' execute function certyo.capture_before_insert()', v_rel.schema_name, v_rel.table_name);
    execute format('create trigger certyo_before before update on %I.%I for each row'
                   ' execute function certyo.capture_before(%L)',
                   v_rel.schema_name, v_rel.table_name, v_certyo_owner::regrole::name);
    -- Inserts and deletes of ordinary tables: statement-level triggers with transition
    -- tables, one set-based outbox INSERT per statement. Partitioned tables: row-level
    -- triggers, which partitions inherit, so direct writes to a partition are captured.
    if v_rel.relkind = 'r' then
        if 'insert' = any (v_ops) then
            execute format('create trigger certyo_capture_insert after insert on %I.%I referencing new table as certyo_new'
                           ' for each statement execute function certyo.capture_rows(%s)', v_rel.schema_name, v_rel.table_name, v_args);
        end if;
        if 'delete' = any (v_ops) then
            execute format('create trigger certyo_capture_delete after delete on %I.%I referencing old table as certyo_old'
                           ' for each statement execute function certyo.capture_rows(%s)', v_rel.schema_name, v_rel.table_name, v_args);
        end if;
    end if;
    -- Updates: a row trigger whose WHEN clause skips status write-backs (the version is
    -- unchanged) without calling anything, so the relay's write-back stays cheap. It
    -- skips a backfill's stamp too: certyo.backfill_step writes those changes to the
    -- outbox itself, set-based, from the stamp's RETURNING. The stamp marks the row with
    -- an empty certyo_record_hash (until the relay's write-back), which no captured
    -- change has: capture_before() sets it NULL for every change but one made by
    -- certyo's owner (a status write-back), so no one else can skip capture this way.
    -- The clause is short on purpose: PostgreSQL reads it back from its stored text in
    -- every UPDATE statement (the clause tables tracked before had, which named
    -- certyo.backfill and the trigger depth, cost a single-row UPDATE 7% more).
    if 'update' = any (v_ops) then
        execute format('create trigger certyo_capture_update after update on %I.%I for each row'
                       ' when (old.certyo_record_version is distinct from new.certyo_record_version'
                       ' and new.certyo_record_hash is null)'
                       ' execute function certyo.capture(%s)',
                       v_rel.schema_name, v_rel.table_name, v_args);
    end if;
    -- A key changed by UPDATE: the old record ends with a delete (see capture_key_change).
    -- Named to fire after certyo_capture_update. Nothing to compare when deletes are
    -- not captured.
    if 'delete' = any (v_ops) then
        execute format('create trigger certyo_capture_zkey after update on %I.%I for each row'
                       ' when (%s) execute function certyo.capture_key_change(%s)',
                       v_rel.schema_name, v_rel.table_name,
                       (select string_agg(format('old.%1$I is distinct from new.%1$I', k), ' or ')
                        from unnest(v_key_names) as k),
                       v_args);
    end if;
    if v_rel.relkind = 'p' then
        if 'insert' = any (v_ops) then
            execute format('create trigger certyo_capture_insert after insert on %I.%I'
                           ' for each row execute function certyo.capture(%s)', v_rel.schema_name, v_rel.table_name, v_args);
        end if;
        if 'delete' = any (v_ops) then
            execute format('create trigger certyo_capture_delete after delete on %I.%I'
                           ' for each row execute function certyo.capture(%s)', v_rel.schema_name, v_rel.table_name, v_args);
        end if;
    end if;
    -- Statement-level triggers are not inherited by partitions: put them on each.
    -- (No wake-up trigger: capture wakes a waiting relay itself.)
    for v_part in select target union select relid from pg_partition_tree(target) loop
        execute format('create trigger certyo_refuse_truncate before truncate on %s'
                       ' for each statement execute function certyo.refuse_truncate()', v_part);
    end loop;
    -- The rows already there: sent by the relay, chunk by chunk (certyo.backfill).
    if backfill then
        perform certyo.backfill(target);
    end if;
end
$$;

comment on function certyo.enable_tracking(regclass, name[], text, text[], name[], boolean) is
    'Start capturing INSERT/UPDATE/DELETE of a table into certyo''s outbox. Idempotent. '
    'key_columns default to the primary key; collection defaults to schema.table.';
