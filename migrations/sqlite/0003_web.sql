-- The dashboard: users and their sessions, login throttling, what operators did to
-- incidents, and settings edited in the browser.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT
);

-- Only hashes of the session cookie are stored: a copy of the database does not log
-- anyone in. The CSRF token is per session and sent back in forms and htmx headers.
CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Failed logins, counted per username and per client address over a window.
CREATE TABLE login_failures (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL,
    client   TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX login_failures_username ON login_failures (username, at);
CREATE INDEX login_failures_client ON login_failures (client, at);

-- The operator's view of an incident, kept apart from the engine's state so the
-- ingest path never contends with a click.
CREATE TABLE incident_marks (
    incident_id   BIGINT PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    ack_by        TEXT,
    ack_at        BIGINT,
    snoozed_until BIGINT,
    snoozed_by    TEXT,
    resolved_by   TEXT,
    resolved_at   BIGINT
);

CREATE TABLE incident_activity (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
    username    TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX incident_activity_incident ON incident_activity (incident_id, id);

CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

-- Every sending IP seen, kept up to date by the ingest commit so the IPs page does
-- not scan the events.
CREATE TABLE sending_ips (
    ip         TEXT PRIMARY KEY,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    helo       TEXT
);
