-- Edge ledger schema, version 6: how far horde has read each agent's own records (Claude
-- Code's transcripts, Codex's rollout files) for model calls, and which calls it recorded.
-- A call is claimed here before its AgentDecision is appended, so two hooks reading the same
-- lines at once, or a transcript read again from the start, never record a call twice (a
-- crash between the two loses that one call rather than counting it twice).
CREATE TABLE agent_usage_files (
    agent    TEXT NOT NULL,
    session  TEXT NOT NULL,
    path     TEXT NOT NULL,     -- the transcript or a subagent's transcript, as found
    read_to  INTEGER NOT NULL,  -- bytes read: always the end of a whole line
    PRIMARY KEY (agent, session, path)
) WITHOUT ROWID;

CREATE TABLE agent_usage_calls (
    agent    TEXT NOT NULL,
    session  TEXT NOT NULL,
    call_id  TEXT NOT NULL,     -- Claude's message.id; for Codex, the rollout's running token total
    seen_at  INTEGER NOT NULL,
    PRIMARY KEY (agent, session, call_id)
) WITHOUT ROWID;
