//! The rmcp wiring: [`HordeMcp`] answers `tools/list` and `tools/call` over a [`Backend`],
//! records every call, and leaves the lifecycle to rmcp — both the `initialize` handshake
//! (2025-11-25 and earlier) and the stateless protocol (2026-07-28: `server/discover`, the
//! version and client in each request's `_meta`).

use std::borrow::Cow;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, NumberOrString, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

use crate::backend::{Backend, CallRecord};
use crate::tools::{self, Outcome};

/// The protocol versions served: the stateless one and those with a handshake before it.
pub const VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

const INSTRUCTIONS: &str = "horde records every step of coding agents in this project as signed events. \
Use log/show/history/diff to see what happened and who did it, restore to get a past tree into a new \
directory, approvals to see what waits for a person, sync_status for sync. Lists are paged: pass \
next_cursor back as cursor. Every call here is itself recorded.";

/// horde's MCP server over a backend.
pub struct HordeMcp<B> {
    backend: B,
    version: String,
}

impl<B: Backend> HordeMcp<B> {
    /// `version` is what `serverInfo` says (the binary's version).
    pub fn new(backend: B, version: impl Into<String>) -> Self {
        Self {
            backend,
            version: version.into(),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Runs one call and records it; a call that cannot be recorded is an error, whatever it
    /// returned.
    pub async fn call(
        &self,
        client: &str,
        call_id: &str,
        name: &str,
        args: &JsonObject,
    ) -> Result<CallToolResult, ErrorData> {
        let started = Instant::now();
        let outcome = tools::call(&self.backend, name, args).await;
        let (result, summary, error) = match outcome {
            Outcome::Ok(v) => {
                let summary = tools::summary(name, &v);
                (CallToolResult::structured(v), summary, None)
            }
            Outcome::Refused(msg) => (
                CallToolResult::error(vec![ContentBlock::text(msg.clone())]),
                "refused".to_owned(),
                Some(msg),
            ),
        };
        let record = CallRecord {
            client: client.to_owned(),
            call_id: call_id.to_owned(),
            tool: name.to_owned(),
            args: tools::summarise_args(args),
            summary,
            error,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        if let Err(e) = self.backend.record(record).await {
            return Err(ErrorData::internal_error(
                format!("this call could not be recorded, so its result is withheld: {e}"),
                None,
            ));
        }
        Ok(result)
    }
}

fn id_text(id: &NumberOrString) -> String {
    match id {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => s.to_string(),
    }
}

impl<B: Backend> ServerHandler for HordeMcp<B> {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("horde", self.version.clone()))
            .with_instructions(INSTRUCTIONS)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(VERSIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let client = context
            .client_info()
            .map_or_else(|| "unknown".to_owned(), |i| i.name);
        let args = request.arguments.unwrap_or_default();
        let result = self
            .call(&client, &id_text(&context.id), &request.name, &args)
            .await?;
        Ok(result.into())
    }
}

/// Why serving ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the MCP session could not start: {0}")]
    Start(String),
    #[error("the MCP server stopped: {0}")]
    Stopped(String),
}

/// Serves `server` on stdin/stdout until the client closes them.
pub async fn serve_stdio<B: Backend>(server: HordeMcp<B>) -> Result<(), ServeError> {
    let running = match server.serve(rmcp::transport::stdio()).await {
        Ok(r) => r,
        // A client that connects and leaves without a request is not an error.
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => return Ok(()),
        Err(e) => return Err(ServeError::Start(e.to_string())),
    };
    running
        .waiting()
        .await
        .map_err(|e| ServeError::Stopped(e.to_string()))?;
    Ok(())
}
