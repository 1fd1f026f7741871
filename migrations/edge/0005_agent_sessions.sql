-- Edge ledger schema, version 5: sessions of agents recorded through their hooks.
-- These rows are a cache of what the log says, kept so that each short-lived `horde hook`
-- process finds its session and the open tool calls without reading the log: the events
-- themselves carry the same facts (task id and trace id on every event of a session, the
-- intent ToolCall with its call_id). Losing a row loses only a causation link.
CREATE TABLE agent_sessions (
    agent      TEXT NOT NULL,   -- "claude", "codex", "gemini"
    session    TEXT NOT NULL,   -- the agent's session id
    task_id    BLOB NOT NULL,   -- the horde task the session is
    timeline   BLOB NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    transcript TEXT,            -- Claude's transcript_path / Codex's rollout file, as told
    PRIMARY KEY (agent, session)
) WITHOUT ROWID;

CREATE TABLE agent_calls (
    agent      TEXT NOT NULL,
    session    TEXT NOT NULL,
    call_id    TEXT NOT NULL,   -- tool_use_id / call_id
    intent     BLOB NOT NULL,   -- the intent ToolCall event
    tool       TEXT NOT NULL,
    paths      TEXT,            -- JSON array of the repo paths the call declared (Edit, Write), or NULL
    verdict    TEXT NOT NULL,   -- allow | deny | ask | unchecked
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    PRIMARY KEY (agent, session, call_id)
) WITHOUT ROWID;
CREATE INDEX agent_calls_open ON agent_calls (ended_at, started_at);
