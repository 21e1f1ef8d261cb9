-- 0001_core: key/value metadata and the append-only audit log of the admin socket.
-- Applied by promod.store.database inside one transaction together with PRAGMA user_version;
-- migration files must not contain BEGIN/COMMIT themselves.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    ts      TEXT NOT NULL,
    uid     INTEGER,
    gid     INTEGER,
    pid     INTEGER,
    user    TEXT,
    role    TEXT,
    command TEXT NOT NULL,
    args    TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error   TEXT
);

CREATE INDEX audit_log_ts ON audit_log (ts);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed');
END;
