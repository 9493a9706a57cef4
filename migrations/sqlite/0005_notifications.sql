-- Outbound webhook notifications on incident transitions. One row per (webhook,
-- transition): the UNIQUE constraint is what keeps a transition from being notified
-- twice, across restarts and across app instances sharing the database. The row is
-- also the retry queue (next_attempt_at) and, with its attempts, the delivery log.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- SHA-256 of the webhook URL: identifies the webhook without storing its secret.
    webhook_id      TEXT NOT NULL,
    -- The URL with secret path segments and query masked, for the delivery log.
    webhook_label   TEXT NOT NULL,
    transition_key  TEXT NOT NULL,
    incident_id     BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    phase           TEXT,
    transition_at   BIGINT NOT NULL,
    -- The body as built when the transition was seen; retries send the same bytes.
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    -- Pending: when the next attempt is due. Bumped ahead while an instance sends,
    -- as a lease, so two instances never post the same row at once.
    next_attempt_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    last_status     INTEGER,
    last_error      TEXT,
    finished_at     BIGINT,
    UNIQUE (webhook_id, transition_key)
);
CREATE INDEX notifications_due ON notifications (state, next_attempt_at);

CREATE TABLE notification_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id BIGINT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    at              BIGINT NOT NULL,
    status          INTEGER,
    error           TEXT,
    duration_ms     BIGINT NOT NULL
);
CREATE INDEX notification_attempts_notification ON notification_attempts (notification_id, id);

-- How far the notifier has read the incidents (their updated_at), shared by every
-- instance so that a restart does not read every incident again.
CREATE TABLE notify_cursor (
    id         INTEGER PRIMARY KEY,
    high_water BIGINT NOT NULL
);

-- The notifier reads incidents changed since its cursor, oldest change first.
CREATE INDEX incidents_updated ON incidents (updated_at, id);
