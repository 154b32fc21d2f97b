import Policy

/// The heartbeat table drctl writes into production and reads back from every restore of it:
/// its set-up, the one statement the writer sends, and what a restore is asked. The one place
/// its name and columns are spelled.
public enum HeartbeatSQL {
    public static let table = "public.drctl_heartbeat"
    /// The login role drctl serve writes as (CNPG managed role), allowed nothing but INSERT there.
    public static let role = "drctl_heartbeat"

    /// Run once in the database as its owner. seq, at and lsn are set by a trigger running as the
    /// owner, not by the writer: the role can neither read the table nor choose what a row says,
    /// and seq has no gaps among committed rows (taken under a transaction lock, a rolled-back
    /// insert leaves none), so a gap in a restore is a committed transaction that did not come back.
    public static func setup(role: String = role) -> String {
        """
        CREATE TABLE IF NOT EXISTS \(table) (
          seq bigint PRIMARY KEY,
          at timestamptz NOT NULL,
          lsn pg_lsn NOT NULL
        );
        CREATE OR REPLACE FUNCTION public.drctl_heartbeat_stamp() RETURNS trigger
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
        BEGIN
          PERFORM pg_advisory_xact_lock(hashtext('drctl_heartbeat'));
          NEW.seq := coalesce((SELECT max(seq) FROM \(table)), 0) + 1;
          NEW.at := clock_timestamp();
          NEW.lsn := pg_current_wal_lsn();
          RETURN NEW;
        END $$;
        REVOKE ALL ON FUNCTION public.drctl_heartbeat_stamp() FROM PUBLIC;
        DROP TRIGGER IF EXISTS drctl_heartbeat_stamp ON \(table);
        CREATE TRIGGER drctl_heartbeat_stamp BEFORE INSERT ON \(table)
          FOR EACH ROW EXECUTE FUNCTION public.drctl_heartbeat_stamp();
        REVOKE ALL ON \(table) FROM PUBLIC;
        GRANT INSERT ON \(table) TO \(role);

        """
    }

    /// What drctl serve sends, as the heartbeat role.
    public static let insert = "INSERT INTO \(table) DEFAULT VALUES"

    /// Of a restored database: rows, lowest and highest seq, the newest row's time (UTC) and LSN,
    /// one line `count|min|max|at|lsn` ('' fields without rows).
    public static let summary = """
        select count(*), coalesce(min(seq)::text, ''), coalesce(max(seq)::text, ''), \
        coalesce((select to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '|' || lsn::text from \(table) order by seq desc limit 1), '|') \
        from \(table)
        """

    /// The first gaps in seq among the restored rows, `from|to` per line (at most 20).
    public static let gaps = """
        select seq + 1, next - 1 from (select seq, lead(seq) over (order by seq) as next from \(table)) s \
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
