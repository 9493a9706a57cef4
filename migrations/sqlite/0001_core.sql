-- Core schema: sources, API tokens, events, dead letters, incidents.
-- Times are unix milliseconds (UTC) in both backends, so queries agree across them.

CREATE TABLE sources (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    format        TEXT NOT NULL DEFAULT 'json',
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    last_event_at BIGINT
);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL,
    phase           TEXT NOT NULL,
    first_seen      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    closed_at       BIGINT,
    due_at          BIGINT,
    deferred_count  BIGINT NOT NULL,
    delivered_count BIGINT NOT NULL,
    bounced_count   BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    state           TEXT NOT NULL
);
CREATE INDEX incidents_destination ON incidents (destination, id);
CREATE INDEX incidents_status_last_seen ON incidents (status, last_seen);
CREATE INDEX incidents_due ON incidents (due_at) WHERE status = 'open';

CREATE TABLE events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id        BIGINT NOT NULL REFERENCES sources (id),
    dedupe_key       TEXT NOT NULL UNIQUE,
    ext_id           TEXT,
    type             TEXT NOT NULL,
    ts               BIGINT NOT NULL,
    received_at      BIGINT NOT NULL,
    recipient        TEXT NOT NULL,
    recipient_domain TEXT NOT NULL,
    sender           TEXT,
    source_ip        TEXT,
    helo             TEXT,
    mx_host          TEXT,
    mx_ip            TEXT,
    destination      TEXT NOT NULL,
    response         TEXT,
    code             INTEGER,
    enhanced         TEXT,
    stage            TEXT NOT NULL,
    cause            TEXT,
    action           TEXT,
    classification   TEXT,
    attempt          INTEGER,
    pool             TEXT,
    message_id       TEXT,
    incident_id      BIGINT,
    raw              TEXT NOT NULL
);
CREATE INDEX events_incident ON events (incident_id, id);
CREATE INDEX events_received ON events (received_at);
CREATE INDEX events_source ON events (source_id, id);
CREATE INDEX events_ts ON events (ts);

CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id   BIGINT REFERENCES sources (id),
    received_at BIGINT NOT NULL,
    item_index  INTEGER,
    field       TEXT,
    reason      TEXT NOT NULL,
    raw         TEXT NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
