-- Every attempt to email an incident's escalation report, accepted or not: who sent
-- it, when, to whom, the Message-ID, and the relay's answer (its reply on refusal).
CREATE TABLE report_sends (
    id             BIGSERIAL PRIMARY KEY,
    incident_id    BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at             BIGINT NOT NULL,
    username       TEXT NOT NULL,
    -- One address per line: a display name may contain a comma, never a line break.
    recipients     TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    ok             BOOLEAN NOT NULL,
    relay_response TEXT NOT NULL
);
CREATE INDEX report_sends_incident ON report_sends (incident_id, id);
