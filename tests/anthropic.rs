//! A model for Claude Code: a server that speaks the Anthropic Messages API (streamed
//! server-sent events) with scripted replies — tool calls, then text — and distinct usage
//! numbers for every message, so a test can compare what horde recorded with what was sent.
//! The tests of the real Claude Code and `horde-bench hooks` both drive the agent with it.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::agents::serve_http;

/// One reply of the scripted model.
#[derive(Clone, Debug)]
pub enum Reply {
    Tool(String, Value),
    /// Several tool calls in one message (ids `toolu_N_0`, `toolu_N_1`, …).
    Tools(Vec<(String, Value)>),
    Text(String),
}

impl Reply {
    /// One call of tool `name` (id `toolu_N`, N the main request's number).
    pub fn tool(name: &str, input: Value) -> Self {
        Self::Tool(name.to_owned(), input)
    }

    pub fn tools(calls: Vec<(&str, Value)>) -> Self {
        Self::Tools(calls.into_iter().map(|(n, v)| (n.to_owned(), v)).collect())
    }

    pub fn text(t: &str) -> Self {
        Self::Text(t.to_owned())
    }
}

/// A Messages API server: the agent's main requests (those offering tools) get the script in
/// order; side requests (titles, summaries) get a short text. Every main request body is
/// kept, and the usage each message reported.
pub struct ModelServer {
    port: u16,
    requests: Arc<Mutex<Vec<Value>>>,
    sent: Arc<Mutex<Vec<Sent>>>,
}

/// What the server said a message used: distinct numbers for every message.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub id: String,
    /// A main request's reply (not a side request's).
    pub main: bool,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

type Script = Mutex<(Vec<Reply>, usize)>;

impl ModelServer {
    pub fn start(script: Vec<Reply>) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let script = Mutex::new((script, 0usize));
        let (reqs, sent2) = (requests.clone(), sent.clone());
        let port = serve_http(Arc::new(move |path: &str, req: &Value| {
            answer(path, req, &reqs, &sent2, &script)
        }));
        Self {
            port,
            requests,
            sent,
        }
    }

    /// Every message's usage, in the order they were sent.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("lock").clone()
    }

    /// For `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The main requests' bodies, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests.lock().expect("lock").clone()
    }
}

/// Answers one request of the agent.
fn answer(
    path: &str,
    req: &Value,
    reqs: &Mutex<Vec<Value>>,
    sent: &Mutex<Vec<Sent>>,
    script: &Script,
) -> (u16, &'static str, String) {
    if !path.starts_with("/v1/messages") || path.contains("count_tokens") {
        (
            200,
            "application/json",
            json!({"input_tokens": 10}).to_string(),
        )
    } else {
        let main = req["tools"].as_array().is_some_and(|t| t.len() > 3);
        let reply = if main {
            reqs.lock().expect("lock").push(req.clone());
            let mut s = script.lock().expect("lock");
            let i = s.1;
            s.1 += 1;
            s.0.get(i).cloned().unwrap_or_else(|| Reply::text("done"))
        } else {
            Reply::text("ok")
        };
        let n = reqs.lock().expect("lock").len();
        let usage = {
            let mut sent = sent.lock().expect("lock");
            let k = sent.len() as u64 + 1;
            let u = Sent {
                id: format!("msg_{k:03}"),
                main,
                input: 1000 + k,
                output: 40 + 3 * k,
                cache_read: 20_000 + 7 * k,
                cache_write: 300 + 11 * k,
            };
            sent.push(u.clone());
            u
        };
        (200, "text/event-stream", sse(&reply, req, n, &usage))
    }
}

/// The streamed events of one message: the usage as the API streams it (input and cache in
/// message_start, the final output count in message_delta).
fn sse(reply: &Reply, req: &Value, n: usize, usage: &Sent) -> String {
    let model = req["model"].as_str().unwrap_or("claude");
    let mut events = vec![json!({"type": "message_start", "message": {
        "id": usage.id, "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": usage.input, "output_tokens": 1,
            "cache_read_input_tokens": usage.cache_read,
            "cache_creation_input_tokens": usage.cache_write}}})];
    let tool = |events: &mut Vec<Value>, i: usize, id: String, name: &str, input: &Value| {
        events.push(
            json!({"type": "content_block_start", "index": i, "content_block": {
            "type": "tool_use", "id": id, "name": name, "input": {}}}),
        );
        events.push(json!({"type": "content_block_delta", "index": i, "delta": {
            "type": "input_json_delta", "partial_json": input.to_string()}}));
        events.push(json!({"type": "content_block_stop", "index": i}));
    };
    let stop = match reply {
        Reply::Tool(name, input) => {
            tool(&mut events, 0, format!("toolu_{n}"), name, input);
            "tool_use"
        }
        Reply::Tools(calls) => {
            for (i, (name, input)) in calls.iter().enumerate() {
                tool(&mut events, i, format!("toolu_{n}_{i}"), name, input);
            }
            "tool_use"
        }
        Reply::Text(t) => {
            events.push(json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}));
            events.push(json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": t}}));
            events.push(json!({"type": "content_block_stop", "index": 0}));
            "end_turn"
        }
    };
    events.push(
        json!({"type": "message_delta", "delta": {"stop_reason": stop,
        "stop_sequence": null}, "usage": {"output_tokens": usage.output}}),
    );
    events.push(json!({"type": "message_stop"}));
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}
