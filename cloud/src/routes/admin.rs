//! Registration and access: signup, users, API keys, devices, projects and timelines.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use horde_core::{ApiKeyId, DeviceId, ProjectId, TimelineId, UserId};
use horde_kv::OrderedKv;
use horde_ledger::{ApiKey, Device, LedgerError, Project, Role, Timeline, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, parse_id};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// The tenant's (company's or team's) name, unique.
    pub tenant: String,
    /// The first admin's email.
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignupResponse {
    pub tenant_id: String,
    pub user_id: String,
    /// The admin's API key. Shown once: only its hash is stored.
    pub api_key: String,
}

fn check_email(email: &str) -> ApiResult<()> {
    let ok = email.len() <= 200
        && email
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('@'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "email {email:?} is not an email address"
        )))
    }
}

/// Creates a tenant and its first admin; returns the admin's API key once.
#[utoipa::path(post, path = "/v1/signup", tag = "access", request_body = SignupRequest, responses(
    (status = 201, body = SignupResponse),
    (status = 400, description = "bad name or email"),
    (status = 409, description = "a tenant with this name exists"),
    (status = 429, description = "too many signups from this address")))]
pub async fn signup<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<SignupRequest>,
) -> ApiResult<(StatusCode, Json<SignupResponse>)> {
    if app.signup_rate.check_key(&peer.ip()).is_err() {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many signups from this address; retry in a minute",
        );
        e.retry_after = Some(60);
        return Err(e);
    }
    check_email(&req.email)?;
    let (tenant, user) = app.ledger.create_tenant(&req.tenant, &req.email).await?;
    let key = app
        .ledger
        .create_api_key(tenant.id, user.id, Role::Admin, "signup")
        .await?;
    tracing::info!(tenant = %tenant.id, "signup");
    Ok((
        StatusCode::CREATED,
        Json(SignupResponse {
            tenant_id: tenant.id.to_string(),
            user_id: user.id.to_string(),
            api_key: key.secret,
        }),
    ))
}

/// What a key may do: admins manage the tenant, members write, viewers only read.
// The ledger's `Role` as the API spells it (documentation only).
#[derive(ToSchema)]
#[schema(as = Role, rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Member,
    Viewer,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub tenant_id: String,
    pub tenant: String,
    pub user_id: String,
    pub key_id: String,
    #[schema(value_type = RoleName, example = "admin")]
    pub role: Role,
}

/// Who this API key acts for.
#[utoipa::path(get, path = "/v1/me", tag = "access", security(("bearer" = [])), responses(
    (status = 200, body = MeResponse), (status = 401, description = "no or bad key")))]
pub async fn me<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
) -> ApiResult<Json<MeResponse>> {
    let tenant = app.ledger.tenant(caller.tenant()).await?;
    Ok(Json(MeResponse {
        tenant_id: tenant.id.to_string(),
        tenant: tenant.name,
        user_id: caller.user().to_string(),
        key_id: caller.key.id.to_string(),
        role: caller.role(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUserRequest {
    pub email: String,
    #[schema(value_type = RoleName, example = "member")]
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    #[schema(value_type = RoleName)]
    pub role: Role,
    pub created_at: i64,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id.to_string(),
            email: u.email,
            role: u.role,
            created_at: u.created_at,
        }
    }
}

/// Adds a user to the caller's tenant (admin).
#[utoipa::path(post, path = "/v1/users", tag = "access", security(("bearer" = [])), request_body = AddUserRequest, responses(
    (status = 201, body = UserView), (status = 403, description = "not an admin"), (status = 409, description = "email taken")))]
pub async fn add_user<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiJson(req): ApiJson<AddUserRequest>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    caller.require_admin()?;
    check_email(&req.email)?;
    let user = app
        .ledger
        .add_user(caller.tenant(), &req.email, req.role)
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
}

/// The tenant's users.
#[utoipa::path(get, path = "/v1/users", tag = "access", security(("bearer" = [])), responses((status = 200, body = UserList)))]
pub async fn list_users<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
) -> ApiResult<Json<UserList>> {
    let users = app.ledger.users(caller.tenant()).await?;
    Ok(Json(UserList {
        users: users.into_iter().map(UserView::from).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// What the key is for (shown in listings).
    pub name: String,
    /// The user the key acts for (default: the caller). Admins only for other users.
    pub user_id: Option<String>,
    /// At most the user's role (default: the user's role).
    #[schema(value_type = Option<RoleName>)]
    pub role: Option<Role>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub user_id: String,
    #[schema(value_type = RoleName)]
    pub role: Role,
    pub created_at: i64,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        KeyView {
            id: k.id.to_string(),
            name: k.name,
            user_id: k.user.to_string(),
            role: k.role,
            created_at: k.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyResponse {
    #[serde(flatten)]
    pub key: KeyView,
    /// The secret, shown once.
    pub api_key: String,
}

fn rank(r: Role) -> u8 {
    match r {
        Role::Viewer => 0,
        Role::Member => 1,
        Role::Admin => 2,
    }
}

/// Creates an API key (members for themselves, admins for anyone in the tenant).
#[utoipa::path(post, path = "/v1/keys", tag = "access", security(("bearer" = [])), request_body = CreateKeyRequest, responses(
    (status = 201, body = NewKeyResponse), (status = 403, description = "not allowed"), (status = 404, description = "no such user")))]
pub async fn create_key<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<NewKeyResponse>)> {
    caller.require_write()?;
    let user_id: UserId = match &req.user_id {
        Some(u) => parse_id("user", u)?,
        None => caller.user(),
    };
    if user_id != caller.user() {
        caller.require_admin()?;
    }
    let users = app.ledger.users(caller.tenant()).await?;
    let user = users
        .into_iter()
        .find(|u| u.id == user_id)
        .ok_or_else(|| ApiError::not_found(format!("no user {user_id}")))?;
    let role = req.role.unwrap_or(user.role);
    if rank(role) > rank(user.role) || rank(role) > rank(caller.role()) {
        return Err(ApiError::forbidden(format!(
            "a key cannot have more rights than its user ({:?}) or its creator ({:?})",
            user.role,
            caller.role()
        )));
    }
    let new = app
        .ledger
        .create_api_key(caller.tenant(), user_id, role, &req.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewKeyResponse {
            key: new.key.into(),
            api_key: new.secret,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// API keys (admins see the tenant's, others their own).
#[utoipa::path(get, path = "/v1/keys", tag = "access", security(("bearer" = [])), responses((status = 200, body = KeyList)))]
pub async fn list_keys<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
) -> ApiResult<Json<KeyList>> {
    let keys = app.ledger.api_keys(caller.tenant()).await?;
    let admin = caller.require_admin().is_ok();
    Ok(Json(KeyList {
        keys: keys
            .into_iter()
            .filter(|k| admin || k.user == caller.user())
            .map(KeyView::from)
            .collect(),
    }))
}

/// Revokes an API key at once (members their own, admins any of the tenant).
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "access", security(("bearer" = [])),
    params(("id" = String, Path, description = "key id")), responses(
    (status = 204, description = "revoked"), (status = 403, description = "a viewer key"),
    (status = 404, description = "no such key")))]
pub async fn revoke_key<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let id: ApiKeyId = parse_id("key", &id)?;
    let key = app
        .ledger
        .api_key(caller.tenant(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no key {id}")))?;
    if key.user != caller.user() {
        caller
            .require_admin()
            .map_err(|_| ApiError::not_found(format!("no key {id}")))?;
    }
    app.ledger.revoke_api_key(caller.tenant(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDeviceRequest {
    /// The device id (a UUID the device chose).
    pub id: String,
    /// Its ed25519 public key, 64 hex digits.
    pub public_key: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub public_key: String,
    pub name: String,
    pub registered_at: i64,
}

impl From<Device> for DeviceView {
    fn from(d: Device) -> Self {
        DeviceView {
            id: d.id.to_string(),
            public_key: hex::encode(&d.public_key),
            name: d.name,
            registered_at: d.registered_at,
        }
    }
}

/// Registers a device's public key (idempotent for the same key; another key → 409).
#[utoipa::path(post, path = "/v1/devices", tag = "access", security(("bearer" = [])), request_body = RegisterDeviceRequest, responses(
    (status = 201, body = DeviceView, description = "registered"),
    (status = 200, body = DeviceView, description = "already registered with this key"),
    (status = 400, description = "the id is not a UUID, or the public key not an ed25519 one"),
    (status = 403, description = "a viewer key"),
    (status = 409, description = "registered with another key")))]
pub async fn register_device<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiJson(req): ApiJson<RegisterDeviceRequest>,
) -> ApiResult<(StatusCode, Json<DeviceView>)> {
    caller.require_write()?;
    let id: DeviceId = req
        .id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("device id {:?} is not a UUID", req.id)))?;
    let key = hex::decode(&req.public_key)
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| {
            ApiError::bad_request("public_key must be 64 hex digits (an ed25519 public key)")
        })?;
    if !key_is_valid(&key) {
        return Err(ApiError::bad_request(
            "public_key is not a valid ed25519 public key",
        ));
    }
    let existed = match app.ledger.device(caller.tenant(), id).await {
        Ok(_) => true,
        Err(LedgerError::DeviceNotRegistered(_)) => false,
        Err(e) => return Err(e.into()),
    };
    let device = app
        .ledger
        .register_device(caller.tenant(), id, &key, &req.name)
        .await?;
    tracing::Span::current().record("device", tracing::field::display(id));
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(device.into())))
}

fn key_is_valid(key: &[u8]) -> bool {
    <[u8; 32]>::try_from(key).is_ok_and(|k| horde_core::keys::public_key_is_valid(&k))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceView>,
}

/// The tenant's devices.
#[utoipa::path(get, path = "/v1/devices", tag = "access", security(("bearer" = [])), responses((status = 200, body = DeviceList)))]
pub async fn list_devices<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
) -> ApiResult<Json<DeviceList>> {
    let devices = app.ledger.devices(caller.tenant()).await?;
    Ok(Json(DeviceList {
        devices: devices.into_iter().map(DeviceView::from).collect(),
    }))
}

/// One device.
#[utoipa::path(get, path = "/v1/devices/{id}", tag = "access", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = DeviceView), (status = 404)))]
pub async fn get_device<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeviceView>> {
    let id: DeviceId = parse_id("device", &id)?;
    match app.ledger.device(caller.tenant(), id).await {
        Ok(d) => Ok(Json(d.into())),
        Err(LedgerError::DeviceNotRegistered(_)) => {
            Err(ApiError::not_found(format!("no device {id}")))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectRequest {
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutProjectRequest {
    pub name: String,
    /// The main timeline's id (the edge's own); default: a new one.
    pub main_timeline: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    pub id: String,
    pub name: String,
    pub main_timeline: String,
    pub created_at: i64,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        ProjectView {
            id: p.id.to_string(),
            name: p.name,
            main_timeline: p.main_timeline.to_string(),
            created_at: p.created_at,
        }
    }
}

/// Creates a project with a new id.
#[utoipa::path(post, path = "/v1/projects", tag = "projects", security(("bearer" = [])), request_body = CreateProjectRequest, responses(
    (status = 201, body = ProjectView), (status = 403, description = "a viewer key"),
    (status = 409, description = "name taken")))]
pub async fn create_project<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateProjectRequest>,
) -> ApiResult<(StatusCode, Json<ProjectView>)> {
    caller.require_write()?;
    let p = app
        .ledger
        .create_project(caller.tenant(), &req.name)
        .await?;
    Ok((StatusCode::CREATED, Json(p.into())))
}

/// Creates a project with the client's id (the edge's own project id) if absent; idempotent.
#[utoipa::path(put, path = "/v1/projects/{id}", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = PutProjectRequest, responses(
    (status = 201, body = ProjectView, description = "created"),
    (status = 200, body = ProjectView, description = "already there"),
    (status = 400, description = "the id or main_timeline is not a UUID"),
    (status = 403, description = "a viewer key"),
    (status = 409, description = "name taken by another project")))]
pub async fn put_project<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PutProjectRequest>,
) -> ApiResult<(StatusCode, Json<ProjectView>)> {
    caller.require_write()?;
    let id: ProjectId = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("project id {id:?} is not a UUID")))?;
    let asked: Option<TimelineId> = match &req.main_timeline {
        Some(t) => Some(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("main_timeline {t:?} is not a UUID")))?,
        ),
        None => None,
    };
    let timeline = asked.unwrap_or_default();
    match app.ledger.project(caller.tenant(), id).await {
        Ok(p) if asked.is_some_and(|t| t != p.main_timeline) => {
            return Err(ApiError::conflict(
                "main_timeline_differs",
                format!(
                    "project {id} exists with main timeline {}, not {timeline}",
                    p.main_timeline
                ),
            ));
        }
        Ok(p) => return Ok((StatusCode::OK, Json(p.into()))),
        Err(LedgerError::ProjectNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match app
        .ledger
        .create_project_with_id(caller.tenant(), id, timeline, &req.name)
        .await
    {
        Ok(p) => Ok((StatusCode::CREATED, Json(p.into()))),
        // A concurrent PUT of the same id won.
        Err(LedgerError::ProjectExists(_)) => match app.ledger.project(caller.tenant(), id).await {
            Ok(p) => Ok((StatusCode::OK, Json(p.into()))),
            Err(_) => Err(ApiError::conflict(
                "exists",
                format!(
                    "a project named {:?} already exists in this tenant",
                    req.name
                ),
            )),
        },
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    pub projects: Vec<ProjectView>,
}

/// The tenant's projects.
#[utoipa::path(get, path = "/v1/projects", tag = "projects", security(("bearer" = [])), responses((status = 200, body = ProjectList)))]
pub async fn list_projects<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
) -> ApiResult<Json<ProjectList>> {
    let projects = app.ledger.projects(caller.tenant()).await?;
    Ok(Json(ProjectList {
        projects: projects.into_iter().map(ProjectView::from).collect(),
    }))
}

/// The project of this tenant with this id.
pub async fn project_of<K: OrderedKv>(
    app: &App<K>,
    caller: &Caller,
    id: &str,
) -> ApiResult<Project> {
    let id: ProjectId = parse_id("project", id)?;
    tracing::Span::current().record("project", tracing::field::display(id));
    Ok(app.ledger.project(caller.tenant(), id).await?)
}

/// One project.
#[utoipa::path(get, path = "/v1/projects/{id}", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ProjectView), (status = 404)))]
pub async fn get_project<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ProjectView>> {
    Ok(Json(project_of(&app, &caller, &id).await?.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineView {
    pub id: String,
    pub parent: Option<String>,
    pub fork_version: Option<u64>,
    pub created_at: i64,
}

impl From<Timeline> for TimelineView {
    fn from(t: Timeline) -> Self {
        TimelineView {
            id: t.id.to_string(),
            parent: t.parent.map(|p| p.to_string()),
            fork_version: t.fork_version,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineList {
    pub timelines: Vec<TimelineView>,
}

/// A project's timelines (main and forks).
#[utoipa::path(get, path = "/v1/projects/{id}/timelines", tag = "projects", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = TimelineList), (status = 404)))]
pub async fn list_timelines<K: OrderedKv>(
    State(app): State<Arc<App<K>>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TimelineList>> {
    let p = project_of(&app, &caller, &id).await?;
    let tls = app.ledger.timelines(caller.tenant(), p.id).await?;
    Ok(Json(TimelineList {
        timelines: tls.into_iter().map(TimelineView::from).collect(),
    }))
}
