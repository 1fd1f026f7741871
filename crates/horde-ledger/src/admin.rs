//! Tenants, users, API keys, projects, devices and timelines.

use horde_core::{ApiKeyId, DeviceId, ProjectId, TenantId, TimelineId, UserId, time::now_micros};
use horde_kv::tuple::{pack, unpack};
use horde_kv::{OrderedKv, RangeOption, Transaction};

use crate::Ledger;
use crate::error::{LedgerError, corrupt};
use crate::keys::{self, TenantKeys};
use crate::records::{ApiKey, Device, Project, Role, Tenant, Timeline, User, from_json, to_json};

/// Longest tenant, project and user names (and emails).
pub const MAX_NAME_BYTES: usize = 200;
/// API keys are `hk_` and 32 random bytes in hex.
const API_KEY_PREFIX: &str = "hk_";

/// A new API key: the secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key: ApiKey,
    pub secret: String,
}

fn check_name(what: &str, name: &str) -> Result<(), LedgerError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(LedgerError::Invalid(format!(
            "{what} {name:?}: must be 1 to {MAX_NAME_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

fn secret_hash(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

impl<K: OrderedKv> Ledger<K> {
    /// Creates a tenant and its first admin. The tenant's key prefix is allocated in the same
    /// transaction (concurrent registrations conflict and are retried, never sharing one).
    pub async fn create_tenant(
        &self,
        name: &str,
        admin_email: &str,
    ) -> Result<(Tenant, User), LedgerError> {
        check_name("tenant name", name)?;
        check_name("email", admin_email)?;
        let id = TenantId::new();
        let user_id = UserId::new();
        let now = now_micros();
        let ((tenant, user), _) =
            self.kv
                .transact(|tx, _| async move {
                    if tx.get(&keys::tenant_name(name), false).await?.is_some() {
                        return Err(LedgerError::TenantExists(name.to_string()));
                    }
                    let last: i64 = match tx.get(&keys::tenant_prefix_counter(), false).await? {
                        Some(v) => unpack(&v)
                            .map_err(|e| corrupt(format!("tenant prefix counter: {e:?}")))?,
                        None => 0,
                    };
                    let prefix = last + 1;
                    tx.set(&keys::tenant_prefix_counter(), &pack(&prefix));
                    let tenant = Tenant {
                        id,
                        name: name.to_string(),
                        prefix,
                        created_at: now,
                    };
                    tx.set(&keys::tenant(id), &to_json(&tenant));
                    tx.set(&keys::tenant_name(name), id.as_bytes());
                    let t = TenantKeys::new(prefix);
                    let user = User {
                        id: user_id,
                        email: admin_email.to_string(),
                        role: Role::Admin,
                        created_at: now,
                    };
                    tx.set(&t.user(user_id), &to_json(&user));
                    tx.set(&t.email(admin_email), user_id.as_bytes());
                    Ok((tenant, user))
                })
                .await?;
        self.prefixes
            .write()
            .expect("prefix cache")
            .insert(id, tenant.prefix);
        tracing::info!(tenant = %id, prefix = tenant.prefix, "tenant created");
        Ok((tenant, user))
    }

    pub async fn tenant(&self, id: TenantId) -> Result<Tenant, LedgerError> {
        self.read_record("tenant", keys::tenant(id), LedgerError::TenantNotFound(id))
            .await
    }

    /// The tenant's keys (its prefix is cached: it never changes).
    pub(crate) async fn tenant_keys(&self, id: TenantId) -> Result<TenantKeys, LedgerError> {
        if let Some(p) = self.prefixes.read().expect("prefix cache").get(&id) {
            return Ok(TenantKeys::new(*p));
        }
        let tenant = self.tenant(id).await?;
        self.prefixes
            .write()
            .expect("prefix cache")
            .insert(id, tenant.prefix);
        Ok(TenantKeys::new(tenant.prefix))
    }

    pub async fn add_user(
        &self,
        tenant: TenantId,
        email: &str,
        role: Role,
    ) -> Result<User, LedgerError> {
        check_name("email", email)?;
        let t = self.tenant_keys(tenant).await?;
        let user = User {
            id: UserId::new(),
            email: email.to_string(),
            role,
            created_at: now_micros(),
        };
        let (user, _) = self
            .kv
            .transact(|tx, _| {
                let (t, user) = (t.clone(), user.clone());
                async move {
                    if tx.get(&t.email(email), false).await?.is_some() {
                        return Err(LedgerError::UserExists(email.to_string()));
                    }
                    tx.set(&t.user(user.id), &to_json(&user));
                    tx.set(&t.email(email), user.id.as_bytes());
                    Ok(user)
                }
            })
            .await?;
        Ok(user)
    }

    pub async fn users(&self, tenant: TenantId) -> Result<Vec<User>, LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        self.read_records("user", t.users().bytes()).await
    }

    /// Creates an API key acting for `user` with `role`. The secret is returned once; only
    /// its SHA-256 is stored.
    pub async fn create_api_key(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
        name: &str,
    ) -> Result<NewApiKey, LedgerError> {
        check_name("key name", name)?;
        let t = self.tenant_keys(tenant).await?;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random)
            .map_err(|e| LedgerError::Invalid(format!("no randomness for a key: {e}")))?;
        let secret = format!("{API_KEY_PREFIX}{}", hex::encode(random));
        let hash = secret_hash(&secret);
        let key = ApiKey {
            id: ApiKeyId::new(),
            tenant,
            user,
            role,
            name: name.to_string(),
            created_at: now_micros(),
        };
        self.kv
            .transact(|tx, _| {
                let (t, key, hash) = (t.clone(), key.clone(), hash.clone());
                async move {
                    if tx.get(&t.user(user), false).await?.is_none() {
                        return Err(LedgerError::UserNotFound(user.to_string()));
                    }
                    tx.set(&keys::api_key(&hash), &to_json(&key));
                    tx.set(&t.key(key.id), &hash);
                    Ok(())
                }
            })
            .await?;
        Ok(NewApiKey { key, secret })
    }

    /// Who an API key secret acts for, or `None` for an unknown or revoked key.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>, LedgerError> {
        if !secret.starts_with(API_KEY_PREFIX) || secret.len() > 200 {
            return Ok(None);
        }
        match self.read_key(keys::api_key(&secret_hash(secret))).await? {
            Some(v) => Ok(Some(from_json("API key", &v)?)),
            None => Ok(None),
        }
    }

    /// The tenant's live API keys (never their secrets).
    pub async fn api_keys(&self, tenant: TenantId) -> Result<Vec<ApiKey>, LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        let (keys, _) = self
            .kv
            .transact(|tx, _| {
                let t = t.clone();
                async move {
                    let hashes = tx
                        .get_all(RangeOption::prefix(t.keys().bytes()), true)
                        .await?;
                    let mut out = Vec::with_capacity(hashes.len());
                    for kv in &hashes {
                        let v = tx
                            .get(&keys::api_key(&kv.value), true)
                            .await?
                            .ok_or_else(|| corrupt("a tenant's key has no record"))?;
                        out.push(from_json::<ApiKey>("API key", &v)?);
                    }
                    Ok::<_, LedgerError>(out)
                }
            })
            .await?;
        Ok(keys)
    }

    /// One API key of this tenant.
    pub async fn api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
    ) -> Result<Option<ApiKey>, LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        let Some(hash) = self.read_key(t.key(id)).await? else {
            return Ok(None);
        };
        match self.read_key(keys::api_key(&hash)).await? {
            Some(v) => Ok(Some(from_json("API key", &v)?)),
            None => Ok(None),
        }
    }

    /// Revokes a key of this tenant. Returns whether it existed.
    pub async fn revoke_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
    ) -> Result<bool, LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        let (found, _) = self
            .kv
            .transact(|tx, _| {
                let t = t.clone();
                async move {
                    let Some(hash) = tx.get(&t.key(id), false).await? else {
                        return Ok(false);
                    };
                    tx.clear(&keys::api_key(&hash));
                    tx.clear(&t.key(id));
                    Ok::<_, LedgerError>(true)
                }
            })
            .await?;
        Ok(found)
    }

    /// Creates a project with its main timeline.
    pub async fn create_project(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<Project, LedgerError> {
        self.create_project_with_id(tenant, ProjectId::new(), TimelineId::new(), name)
            .await
    }

    /// Creates a project with ids chosen by the caller (an edge that already records under
    /// them). Fails if the name or the id is taken.
    pub async fn create_project_with_id(
        &self,
        tenant: TenantId,
        id: ProjectId,
        main: TimelineId,
        name: &str,
    ) -> Result<Project, LedgerError> {
        check_name("project name", name)?;
        let t = self.tenant_keys(tenant).await?;
        let now = now_micros();
        let project = Project {
            id,
            name: name.to_string(),
            main_timeline: main,
            created_at: now,
        };
        let timeline = Timeline {
            id: main,
            parent: None,
            fork_version: None,
            created_at: now,
        };
        let (project, _) = self
            .kv
            .transact(|tx, _| {
                let (t, project, timeline) = (t.clone(), project.clone(), timeline.clone());
                async move {
                    if tx.get(&t.project_name(name), false).await?.is_some() {
                        return Err(LedgerError::ProjectExists(name.to_string()));
                    }
                    if tx.get(&t.project(id), false).await?.is_some() {
                        return Err(LedgerError::Invalid(format!("project id {id} is taken")));
                    }
                    tx.set(&t.project(id), &to_json(&project));
                    tx.set(&t.project_name(name), id.as_bytes());
                    tx.set(&t.p(id).timeline(main), &to_json(&timeline));
                    Ok(project)
                }
            })
            .await?;
        Ok(project)
    }

    pub async fn project(&self, tenant: TenantId, id: ProjectId) -> Result<Project, LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        self.read_record("project", t.project(id), LedgerError::ProjectNotFound(id))
            .await
    }

    pub async fn projects(&self, tenant: TenantId) -> Result<Vec<Project>, LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        self.read_records("project", t.projects().bytes()).await
    }

    /// Registers a device's public key in this tenant. Registering the same key again is a
    /// no-op; another key for a registered device is refused.
    pub async fn register_device(
        &self,
        tenant: TenantId,
        id: DeviceId,
        public_key: &[u8],
        name: &str,
    ) -> Result<Device, LedgerError> {
        check_name("device name", name)?;
        if public_key.len() != 32 {
            return Err(LedgerError::Invalid(format!(
                "a device public key is 32 bytes (ed25519), got {}",
                public_key.len()
            )));
        }
        let t = self.tenant_keys(tenant).await?;
        let device = Device {
            id,
            public_key: public_key.to_vec(),
            name: name.to_string(),
            registered_at: now_micros(),
        };
        let (device, _) = self
            .kv
            .transact(|tx, _| {
                let (t, device) = (t.clone(), device.clone());
                async move {
                    if let Some(v) = tx.get(&t.device(id), false).await? {
                        let existing: Device = from_json("device", &v)?;
                        if existing.public_key != device.public_key {
                            return Err(LedgerError::DeviceKeyMismatch(id));
                        }
                        return Ok(existing);
                    }
                    tx.set(&t.device(id), &to_json(&device));
                    Ok(device)
                }
            })
            .await?;
        Ok(device)
    }

    pub async fn devices(&self, tenant: TenantId) -> Result<Vec<Device>, LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        self.read_records("device", t.devices().bytes()).await
    }

    pub async fn device(&self, tenant: TenantId, id: DeviceId) -> Result<Device, LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        self.read_record("device", t.device(id), LedgerError::DeviceNotRegistered(id))
            .await
    }

    pub async fn timeline(
        &self,
        tenant: TenantId,
        project: ProjectId,
        id: TimelineId,
    ) -> Result<Timeline, LedgerError> {
        let p = self.tenant_keys(tenant).await?.p(project);
        self.read_record(
            "timeline",
            p.timeline(id),
            LedgerError::TimelineNotFound(id),
        )
        .await
    }

    pub async fn timelines(
        &self,
        tenant: TenantId,
        project: ProjectId,
    ) -> Result<Vec<Timeline>, LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        self.project(tenant, project).await?;
        self.read_records("timeline", t.p(project).timelines().bytes())
            .await
    }

    /// Forks a new timeline from `parent` at `version`: the new timeline shares the parent's
    /// history up to that version and records its own from then on.
    pub async fn fork(
        &self,
        tenant: TenantId,
        project: ProjectId,
        parent: TimelineId,
        version: u64,
    ) -> Result<Timeline, LedgerError> {
        let (timeline, _) = self
            .fork_with_id(tenant, project, parent, Some(version), TimelineId::new())
            .await?;
        Ok(timeline)
    }

    /// [`Ledger::fork`] with the new timeline's id chosen by the caller (an edge that already
    /// records under it), at `version` or, when `None`, at the last committed version (read
    /// in the same transaction). Idempotent: if `id` is already a timeline of the project
    /// forked from `parent` at `version` (any version when `None`), that timeline is returned
    /// and the flag is `false`; a timeline `id` with another parent or fork version is
    /// [`LedgerError::TimelineExists`].
    pub async fn fork_with_id(
        &self,
        tenant: TenantId,
        project: ProjectId,
        parent: TimelineId,
        version: Option<u64>,
        id: TimelineId,
    ) -> Result<(Timeline, bool), LedgerError> {
        let t = self.tenant_keys(tenant).await?;
        let created_at = now_micros();
        let (forked, _) = self
            .kv
            .transact(|tx, _| {
                let t = t.clone();
                async move {
                    if tx.get(&t.project(project), false).await?.is_none() {
                        return Err(LedgerError::ProjectNotFound(project));
                    }
                    let p = t.p(project);
                    if let Some(v) = tx.get(&p.timeline(id), false).await? {
                        let existing: Timeline = from_json("timeline", &v)?;
                        let same = existing.parent == Some(parent)
                            && version.is_none_or(|v| existing.fork_version == Some(v));
                        if same {
                            return Ok((existing, false));
                        }
                        return Err(LedgerError::TimelineExists {
                            id,
                            parent: existing.parent,
                            fork_version: existing.fork_version,
                        });
                    }
                    if tx.get(&p.timeline(parent), false).await?.is_none() {
                        return Err(LedgerError::TimelineNotFound(parent));
                    }
                    let last = tx.read_version().await?;
                    let version = version.unwrap_or(last);
                    if version > last {
                        return Err(LedgerError::VersionInFuture {
                            asked: version,
                            last,
                        });
                    }
                    let timeline = Timeline {
                        id,
                        parent: Some(parent),
                        fork_version: Some(version),
                        created_at,
                    };
                    tx.set(&p.timeline(id), &to_json(&timeline));
                    Ok((timeline, true))
                }
            })
            .await?;
        if forked.1 {
            tracing::info!(%tenant, %project, timeline = %id, %parent, "timeline forked");
        }
        Ok(forked)
    }
}
