import Policy

/// The heartbeat table drctl writes into production and reads back from every restore of it:
/// its set-up, the one statement the writer sends, and what a restore is asked. The one place
/// its name and columns are spelled.
public enum HeartbeatSQL {
    public static let schema = "drctl"
    public static let table = "drctl.drctl_heartbeat"
    /// The login role drctl serve writes as (CNPG managed role), allowed nothing but INSERT there.
    public static let role = "drctl_heartbeat"
    /// Owns the schema, the table and the trigger function: no login, no member, so neither the
    /// database's owner nor the writer can drop, replace or read around them, and the trigger
    /// runs with this role's rights, not a superuser's.
    public static let owner = "drctl_heartbeat_owner"

    /// Run once in the database as a superuser (`kubectl cnpg psql`). seq, at and lsn are set by
    /// a trigger running as the owner role, not by the writer: the role can neither read the
    /// table nor choose what a row says, and seq has no gaps among committed rows (taken under a
    /// transaction lock; a rolled-back insert leaves none), so a gap in a restore is a committed
    /// transaction that did not come back. Every name in the function is qualified and its
    /// search_path is pg_catalog alone: nothing another role creates can stand in for it. A
    /// schema `drctl` that someone else already owns stops the set-up.
    public static func setup(role: String = role) -> String {
        """
        DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '\(owner)') THEN
            CREATE ROLE \(owner) NOLOGIN NOINHERIT;
          END IF;
          IF EXISTS (SELECT FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                     WHERE n.nspname = '\(schema)' AND r.rolname <> '\(owner)') THEN
            RAISE EXCEPTION 'schema \(schema) exists and is not owned by \(owner): not setting up the heartbeat in it';
          END IF;
        END $$;
        CREATE SCHEMA IF NOT EXISTS \(schema) AUTHORIZATION \(owner);
        REVOKE ALL ON SCHEMA \(schema) FROM PUBLIC;
        CREATE TABLE IF NOT EXISTS \(table) (
          seq bigint PRIMARY KEY,
          at timestamptz NOT NULL,
          lsn pg_lsn NOT NULL
        );
        ALTER TABLE \(table) OWNER TO \(owner);
        CREATE OR REPLACE FUNCTION \(schema).drctl_heartbeat_stamp() RETURNS trigger
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
          PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('\(table)')::bigint);
          NEW.seq := coalesce((SELECT pg_catalog.max(h.seq) FROM \(table) h), 0) + 1;
          NEW.at := pg_catalog.clock_timestamp();
          NEW.lsn := pg_catalog.pg_current_wal_lsn();
          RETURN NEW;
        END $$;
        ALTER FUNCTION \(schema).drctl_heartbeat_stamp() OWNER TO \(owner);
        REVOKE ALL ON FUNCTION \(schema).drctl_heartbeat_stamp() FROM PUBLIC;
        DROP TRIGGER IF EXISTS drctl_heartbeat_stamp ON \(table);
        CREATE TRIGGER drctl_heartbeat_stamp BEFORE INSERT ON \(table)
          FOR EACH ROW EXECUTE FUNCTION \(schema).drctl_heartbeat_stamp();
        REVOKE ALL ON \(table) FROM PUBLIC;
        GRANT USAGE ON SCHEMA \(schema) TO \(role);
        GRANT INSERT ON \(table) TO \(role);

        """
    }

    /// What drctl serve sends, as the heartbeat role.
    public static let insert = "INSERT INTO \(table) DEFAULT VALUES"

    /// Of a restored database, before anything is read from the table: whether it is still the
    /// plain table the set-up made (owner, kind, the three columns' built-in types), so what a
    /// database's owner or a forged backup put in its place is never read. One line
    /// `kind|owner|columns`.
    public static let shape = """
        select c.relkind, r.rolname, coalesce((select string_agg(a.attname || ' ' || a.atttypid::regtype::text, ',' order by a.attnum) \
        from pg_catalog.pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '') \
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace join pg_catalog.pg_roles r on r.oid = c.relowner \
        where n.nspname = '\(schema)' and c.relname = 'drctl_heartbeat'
        """
    public static let expectedShape = "r|\(owner)|seq bigint,at timestamp with time zone,lsn pg_lsn"

    /// Of a restored database: rows, lowest and highest seq, the newest row's time (UTC) and LSN,
    /// one line `count|min|max|at|lsn` ('' fields without rows).
    public static let summary = """
        select pg_catalog.count(*), coalesce(pg_catalog.min(seq)::text, ''), coalesce(pg_catalog.max(seq)::text, ''), \
        coalesce((select pg_catalog.to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '|' || lsn::text from \(table) order by seq desc limit 1), '|') \
        from \(table)
        """

    /// The first gaps in seq among the restored rows, `from|to` per line (at most 20).
    public static let gaps = """
        select seq + 1, next - 1 from (select seq, pg_catalog.lead(seq) over (order by seq) as next from \(table)) s \
        where next > seq + 1 order by seq limit 20
        """

    /// CNPG's managed role for the heartbeat writer (Cluster spec.managed.roles[]): a login that
    /// is nothing else, its password from the policy's basic-auth Secret.
    public static func managedRole(_ h: BackupPolicy.Heartbeat) -> [String: any Sendable] {
        [
            "name": role, "ensure": "present", "login": true, "superuser": false, "createdb": false, "createrole": false,
            "inherit": false, "replication": false, "bypassrls": false, "connectionLimit": 2,
            "passwordSecret": ["name": h.secretName],
            "comment": "drctl heartbeat writer: INSERT on \(table) only",
        ]
    }
}
