-- DNS and policy check results, kept with their time, and the changes between them.

CREATE TABLE check_results (
    id         BIGSERIAL PRIMARY KEY,
    subject    TEXT NOT NULL,
    name       TEXT NOT NULL,
    verdict    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    records    TEXT NOT NULL,
    checked_at BIGINT NOT NULL
);
CREATE INDEX check_results_subject ON check_results (subject, name, checked_at);
CREATE INDEX check_results_checked ON check_results (checked_at);

CREATE TABLE check_changes (
    id          BIGSERIAL PRIMARY KEY,
    subject     TEXT NOT NULL,
    name        TEXT NOT NULL,
    previous    TEXT,
    verdict     TEXT NOT NULL,
    description TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX check_changes_subject ON check_changes (subject, at);
