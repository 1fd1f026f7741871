//! The ledger's public behaviour, generic over the store: on SQLite always, on FoundationDB
//! when `HORDE_FDB_CLUSTER_FILE` is set and the crate is built with `--features fdb`.

use std::collections::HashSet;
use std::sync::Arc;

use horde_core::proto::{self, event_body::Payload, state_change::Op};
use horde_core::{
    ChainTip, ChainVerifier, DeviceKey, Draft, ProjectId, TenantId, TimelineId, build_event,
};
use horde_kv::OrderedKv;
use horde_kv::sqlite::SqliteKv;
use horde_ledger::{AppendBatch, EventFilter, Ledger, LedgerError, Role};

/// A device recording into one project.
struct Recorder {
    key: Arc<DeviceKey>,
    project: ProjectId,
    timeline: TimelineId,
    tip: ChainTip,
}

impl Recorder {
    fn new(project: ProjectId, timeline: TimelineId) -> Self {
        Recorder {
            key: Arc::new(DeviceKey::generate().expect("key")),
            project,
            timeline,
            tip: ChainTip::default(),
        }
    }

    fn event_at(&mut self, occurred_ms: i64, payload: Payload) -> proto::SignedEvent {
        let mut draft = Draft::new(self.timeline, "test-agent", payload);
        draft.occurred_at = occurred_ms * 1000;
        let built =
            build_event(self.project, self.key.device_id(), &self.tip, draft).expect("build");
        self.tip.advance(built.hash);
        proto::SignedEvent {
            body: built.body,
            hash: built.hash.to_vec(),
        }
    }

    fn tool(&mut self, n: usize) -> Vec<proto::SignedEvent> {
        (0..n)
            .map(|i| self.event_at(1_000 + i as i64, tool(i)))
            .collect()
    }

    fn write(&mut self, path: &str, content: &[u8], ms: i64) -> proto::SignedEvent {
        self.event_at(ms, write(path, content))
    }

    fn batch(&self, events: Vec<proto::SignedEvent>) -> AppendBatch {
        AppendBatch {
            project: self.project,
            device: self.key.device_id(),
            events,
            head: None,
        }
    }
}

fn tool(i: usize) -> Payload {
    Payload::ToolCall(proto::ToolCall {
        tool: "exec".into(),
        args: vec![format!("step {i}")],
        ..Default::default()
    })
}

fn write(path: &str, content: &[u8]) -> Payload {
    Payload::StateChange(proto::StateChange {
        path: path.into(),
        op: Op::Modify as i32,
        after_hash: horde_core::BlobHash::of(content).to_vec(),
        mode: 0o644,
        size: content.len() as u64,
        ..Default::default()
    })
}

fn delete(path: &str) -> Payload {
    Payload::StateChange(proto::StateChange {
        path: path.into(),
        op: Op::Delete as i32,
        ..Default::default()
    })
}

fn unique(name: &str) -> String {
    format!("{name}-{}", horde_core::EventId::new())
}

async fn tenant_with_project<K: OrderedKv>(
    ledger: &Ledger<K>,
) -> (TenantId, ProjectId, TimelineId) {
    let (tenant, _) = ledger
        .create_tenant(&unique("acme"), "admin@example.com")
        .await
        .expect("tenant");
    let project = ledger
        .create_project(tenant.id, "web")
        .await
        .expect("project");
    (tenant.id, project.id, project.main_timeline)
}

async fn device<K: OrderedKv>(
    ledger: &Ledger<K>,
    tenant: TenantId,
    project: ProjectId,
    timeline: TimelineId,
) -> Recorder {
    let r = Recorder::new(project, timeline);
    ledger
        .register_device(tenant, r.key.device_id(), &r.key.public_key(), "laptop")
        .await
        .expect("register");
    r
}

async fn all_events<K: OrderedKv>(
    ledger: &Ledger<K>,
    tenant: TenantId,
    project: ProjectId,
) -> Vec<horde_ledger::LoggedEvent> {
    let mut out = Vec::new();
    loop {
        let filter = EventFilter {
            after: out
                .last()
                .map(|e: &horde_ledger::LoggedEvent| e.versionstamp.clone()),
            ..Default::default()
        };
        let page = ledger
            .events(tenant, project, &filter)
            .await
            .expect("events");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Every seq of the device exactly once, in order, on a verified chain.
fn assert_exactly_once(events: &[horde_ledger::LoggedEvent], r: &Recorder, n: u64) {
    let mut v = ChainVerifier::new(r.project, r.key.device_id());
    for e in events
        .iter()
        .filter(|e| e.body.device_id == r.key.device_id().as_bytes())
    {
        v.push(&e.event.body, &e.event.hash)
            .expect("chain verifies in log order");
    }
    assert_eq!(v.tip().seq, n, "every seq exactly once");
}

async fn tenants_users_keys<K: OrderedKv>(ledger: Ledger<K>) {
    let name = unique("acme");
    let (tenant, admin) = ledger
        .create_tenant(&name, "admin@example.com")
        .await
        .expect("tenant");
    assert_eq!(admin.role, Role::Admin);
    assert_eq!(
        ledger
            .create_tenant(&name, "x@example.com")
            .await
            .expect_err("same name"),
        LedgerError::TenantExists(name.clone())
    );
    assert!(matches!(
        ledger.create_tenant("", "x@example.com").await,
        Err(LedgerError::Invalid(_))
    ));
    // Concurrent registrations get distinct prefixes.
    let created = futures::future::join_all((0..8).map(|_| ledger.create_tenant_named())).await;
    let prefixes: HashSet<i64> = created
        .into_iter()
        .map(|t| t.prefix)
        .chain([tenant.prefix])
        .collect();
    assert_eq!(prefixes.len(), 9, "each tenant has its own prefix");
    // Users and keys.
    let bob = ledger
        .add_user(tenant.id, "bob@example.com", Role::Member)
        .await
        .expect("user");
    assert!(matches!(
        ledger
            .add_user(tenant.id, "bob@example.com", Role::Viewer)
            .await,
        Err(LedgerError::UserExists(_))
    ));
    assert_eq!(ledger.users(tenant.id).await.expect("users").len(), 2);
    let key = ledger
        .create_api_key(tenant.id, bob.id, Role::Member, "ci")
        .await
        .expect("key");
    let who = ledger
        .authenticate(&key.secret)
        .await
        .expect("auth")
        .expect("known key");
    assert_eq!(
        (who.tenant, who.user, who.role),
        (tenant.id, bob.id, Role::Member)
    );
    assert_eq!(ledger.authenticate("hk_00").await.expect("auth"), None);
    assert_eq!(ledger.authenticate("not a key").await.expect("auth"), None);
    assert!(
        ledger
            .revoke_api_key(tenant.id, key.key.id)
            .await
            .expect("revoke")
    );
    assert_eq!(
        ledger.authenticate(&key.secret).await.expect("auth"),
        None,
        "a revoked key no longer works"
    );
    // Devices: same key again is fine, another key is refused.
    let d = DeviceKey::generate().expect("key");
    ledger
        .register_device(tenant.id, d.device_id(), &d.public_key(), "laptop")
        .await
        .expect("register");
    ledger
        .register_device(tenant.id, d.device_id(), &d.public_key(), "laptop")
        .await
        .expect("again");
    let other = DeviceKey::generate().expect("key");
    assert_eq!(
        ledger
            .register_device(tenant.id, d.device_id(), &other.public_key(), "laptop")
            .await
            .expect_err("other key"),
        LedgerError::DeviceKeyMismatch(d.device_id())
    );
    assert!(matches!(
        ledger
            .register_device(tenant.id, d.device_id(), &[1, 2, 3], "x")
            .await,
        Err(LedgerError::Invalid(_))
    ));
    assert!(ledger.create_project(tenant.id, "web").await.is_ok());
    assert!(matches!(
        ledger.create_project(tenant.id, "web").await,
        Err(LedgerError::ProjectExists(_))
    ));
}

trait NamedTenant {
    fn create_tenant_named(&self) -> impl std::future::Future<Output = horde_ledger::Tenant>;
}

impl<K: OrderedKv> NamedTenant for Ledger<K> {
    async fn create_tenant_named(&self) -> horde_ledger::Tenant {
        self.create_tenant(&unique("t"), "a@example.com")
            .await
            .expect("tenant")
            .0
    }
}

async fn append_exactly_once<K: OrderedKv>(ledger: Ledger<K>) {
    let (tenant, project, main) = tenant_with_project(&ledger).await;
    let mut r = device(&ledger, tenant, project, main).await;
    let events = r.tool(15);
    let ack = ledger
        .append(tenant, &r.batch(events[..10].to_vec()))
        .await
        .expect("append");
    assert_eq!((ack.acked_seq, ack.written.len(), ack.skipped), (10, 10, 0));
    assert!(
        ack.written.windows(2).all(|w| w[0].1 < w[1].1),
        "versionstamps grow with seq"
    );
    // The same batch again: nothing written.
    let again = ledger
        .append(tenant, &r.batch(events[..10].to_vec()))
        .await
        .expect("resend");
    assert_eq!(
        (again.acked_seq, again.written.len(), again.skipped),
        (10, 0, 10)
    );
    // Overlapping: 5..15 writes 11..15.
    let overlap = ledger
        .append(tenant, &r.batch(events[4..].to_vec()))
        .await
        .expect("overlap");
    assert_eq!((overlap.acked_seq, overlap.skipped), (15, 6));
    assert_eq!(
        overlap.written.iter().map(|w| w.0).collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15]
    );
    // A gap.
    let mut later = r.tool(5); // seqs 16..20
    let gap = ledger
        .append(tenant, &r.batch(later[2..].to_vec()))
        .await
        .expect_err("gap");
    assert_eq!(
        gap,
        LedgerError::SeqGap {
            expected: 16,
            got: 18
        }
    );
    assert!(gap.to_string().contains("expected seq 16"), "{gap}");
    // A gap inside the batch.
    let mut holey = later.clone();
    holey.remove(1);
    assert_eq!(
        ledger
            .append(tenant, &r.batch(holey))
            .await
            .expect_err("hole"),
        LedgerError::SeqGap {
            expected: 17,
            got: 18
        }
    );
    // A different event at an acknowledged seq (a forked chain).
    let mut fork = Recorder {
        key: r.key.clone(),
        project,
        timeline: main,
        tip: ChainTip::default(),
    };
    let forked = fork.tool(15);
    assert_eq!(
        ledger
            .append(tenant, &r.batch(forked[14..].to_vec()))
            .await
            .expect_err("fork"),
        LedgerError::SeqConflict { seq: 15 }
    );
    // A broken link: seq 16 built on seq 15 of the forked chain.
    let broken = fork.tool(1);
    assert_eq!(
        ledger
            .append(tenant, &r.batch(broken))
            .await
            .expect_err("broken"),
        LedgerError::ChainBroken { seq: 16 }
    );
    // Tampered body.
    let mut tampered = later[0].clone();
    tampered.body[20] ^= 1;
    assert!(matches!(
        ledger.append(tenant, &r.batch(vec![tampered])).await,
        Err(LedgerError::BadEvent { index: 0, .. })
    ));
    // An unregistered device.
    let mut stranger = Recorder::new(project, main);
    let ev = stranger.tool(1);
    assert_eq!(
        ledger
            .append(tenant, &stranger.batch(ev))
            .await
            .expect_err("stranger"),
        LedgerError::DeviceNotRegistered(stranger.key.device_id())
    );
    // Nothing of the refused batches was written; the good tail goes in.
    let ack = ledger
        .append(tenant, &r.batch(std::mem::take(&mut later)))
        .await
        .expect("tail");
    assert_eq!(ack.acked_seq, 20);
    let all = all_events(&ledger, tenant, project).await;
    assert_eq!(all.len(), 20);
    assert_exactly_once(&all, &r, 20);
    assert_eq!(
        ledger
            .cursor(tenant, project, r.key.device_id())
            .await
            .expect("cursor")
            .0,
        20
    );
}

async fn unknown_timeline_is_refused<K: OrderedKv>(ledger: Ledger<K>) {
    let (tenant, project, _) = tenant_with_project(&ledger).await;
    let mut r = device(&ledger, tenant, project, TimelineId::new()).await;
    let ev = r.tool(1);
    assert!(matches!(
        ledger.append(tenant, &r.batch(ev)).await,
        Err(LedgerError::TimelineNotFound(_))
    ));
    assert!(all_events(&ledger, tenant, project).await.is_empty());
}

async fn big_batches_split<K: OrderedKv>(ledger: Ledger<K>) {
    let (tenant, project, main) = tenant_with_project(&ledger).await;
    let mut r = device(&ledger, tenant, project, main).await;
    let filler = "x".repeat(1_000);
    let events: Vec<_> = (0..3_000)
        .map(|i| {
            r.event_at(
                i,
                Payload::ToolCall(proto::ToolCall {
                    tool: "exec".into(),
                    result_summary: filler.clone(),
                    args: vec![i.to_string()],
                    ..Default::default()
                }),
            )
        })
        .collect();
    let ack = ledger
        .append(tenant, &r.batch(events))
        .await
        .expect("append");
    assert_eq!((ack.acked_seq, ack.written.len()), (3_000, 3_000));
    let versions: HashSet<u64> = ack
        .written
        .iter()
        .map(|(_, vs)| horde_ledger::stamp_version(vs))
        .collect();
    assert!(
        versions.len() >= 3,
        "3 MB went in several transactions, got {}",
        versions.len()
    );
    let all = all_events(&ledger, tenant, project).await;
    assert_exactly_once(&all, &r, 3_000);
    // Oversize batch: refused whole.
    let too_many = AppendBatch {
        events: vec![proto::SignedEvent::default(); horde_ledger::MAX_BATCH_EVENTS + 1],
        ..r.batch(vec![])
    };
    assert!(matches!(
        ledger.append(tenant, &too_many).await,
        Err(LedgerError::BatchTooLarge { .. })
    ));
}

async fn heads<K: OrderedKv>(ledger: Ledger<K>) {
    let (tenant, project, main) = tenant_with_project(&ledger).await;
    let mut r = device(&ledger, tenant, project, main).await;
    let events = r.tool(3);
    let hash = horde_core::EventHash::from_slice(&events[2].hash).expect("hash");
    let head = r.key.sign_head(project, 3, hash, 0);
    let mut batch = r.batch(events.clone());
    // A forged signature.
    let mut forged = head.clone();
    forged.signature[0] ^= 1;
    batch.head = Some(forged);
    assert!(matches!(
        ledger.append(tenant, &batch).await,
        Err(LedgerError::BadHead(_))
    ));
    // Signed by another key.
    let other = DeviceKey::generate().expect("key");
    batch.head = Some(other.sign_head(project, 3, hash, 0));
    assert!(matches!(
        ledger.append(tenant, &batch).await,
        Err(LedgerError::BadHead(_))
    ));
    assert!(
        all_events(&ledger, tenant, project).await.is_empty(),
        "refused heads write nothing"
    );
    batch.head = Some(head.clone());
    ledger
        .append(tenant, &batch)
        .await
        .expect("append with head");
    assert_eq!(
        ledger
            .last_head(tenant, project, r.key.device_id())
            .await
            .expect("head"),
        Some(head.clone())
    );
    // A head must sign the batch's last event.
    let more = r.tool(2);
    let mid = horde_core::EventHash::from_slice(&more[0].hash).expect("hash");
    let mut short = r.batch(more.clone());
    short.head = Some(r.key.sign_head(project, 4, mid, 0));
    assert!(matches!(
        ledger.append(tenant, &short).await,
        Err(LedgerError::BadHead(_))
    ));
    // A resent old batch is skipped and leaves the stored head where it was; a different
    // history at acknowledged seqs (a device restored from an old backup) is refused.
    let two = horde_core::EventHash::from_slice(&events[1].hash).expect("hash");
    let mut old = r.batch(events[..2].to_vec());
    old.head = Some(r.key.sign_head(project, 2, two, 0));
    let ack = ledger.append(tenant, &old).await.expect("resend");
    assert_eq!((ack.acked_seq, ack.skipped, ack.written.len()), (3, 2, 0));
    let stored = ledger
        .last_head(tenant, project, r.key.device_id())
        .await
        .expect("head")
        .expect("some");
    assert_eq!(stored.seq, 3, "the head does not move back");
    let mut fork = Recorder {
        key: r.key.clone(),
        project,
        timeline: main,
        tip: horde_core::ChainTip::default(),
    };
    let forked = fork.tool(2);
    let fork_two = horde_core::EventHash::from_slice(&forked[1].hash).expect("hash");
    let mut forged_history = fork.batch(forked);
    forged_history.head = Some(r.key.sign_head(project, 2, fork_two, 0));
    assert!(matches!(
        ledger.append(tenant, &forged_history).await,
        Err(LedgerError::SeqConflict { seq: 2 })
    ));
    // A head alone, at the cursor.
    let alone = AppendBatch {
        head: Some(head),
        ..r.batch(vec![])
    };
    assert_eq!(
        ledger
            .append(tenant, &alone)
            .await
            .expect("head alone")
            .acked_seq,
        3
    );
}

async fn unknown_commit_results<K: OrderedKv>(
    ledger: Ledger<K>,
    injected: bool,
    inject: impl Fn(u32),
) {
    let (tenant, project, main) = tenant_with_project(&ledger).await;
    let mut a = device(&ledger, tenant, project, main).await;
    let mut b = device(&ledger, tenant, project, main).await;
    inject(3);
    // Two devices at once, each batch possibly sent twice (a lost answer).
    let (ea, eb) = (a.tool(400), b.tool(400));
    let run = |r: &Recorder, events: Vec<proto::SignedEvent>| {
        let batches: Vec<AppendBatch> = events.chunks(37).map(|c| r.batch(c.to_vec())).collect();
        let ledger = ledger.clone();
        async move {
            let mut acked = 0;
            for (i, batch) in batches.iter().enumerate() {
                acked += ledger
                    .append(tenant, batch)
                    .await
                    .expect("append")
                    .written
                    .len();
                if i % 4 == 0 {
                    let again = ledger.append(tenant, batch).await.expect("resend");
                    assert!(again.written.is_empty());
                }
            }
            acked
        }
    };
    let (wa, wb) = futures::future::join(run(&a, ea), run(&b, eb)).await;
    if injected {
        assert!(
            wa + wb < 800,
            "some commits were answered with commit_unknown_result and retried"
        );
    }
    inject(0);
    let all = all_events(&ledger, tenant, project).await;
    assert_eq!(all.len(), 800, "every event exactly once");
    assert_exactly_once(&all, &a, 400);
    assert_exactly_once(&all, &b, 400);
}

async fn isolation<K: OrderedKv>(ledger: Ledger<K>) {
    let (ta, pa, main) = tenant_with_project(&ledger).await;
    let (tb, _, _) = tenant_with_project(&ledger).await;
    let mut r = device(&ledger, ta, pa, main).await;
    let ev = r.tool(2);
    ledger
        .append(ta, &r.batch(ev.clone()))
        .await
        .expect("append in A");
    // B names A's project: not found in B, whatever the call.
    assert_eq!(
        ledger
            .project(tb, pa)
            .await
            .expect_err("B reads A's project"),
        LedgerError::ProjectNotFound(pa)
    );
    assert_eq!(
        ledger
            .events(tb, pa, &EventFilter::default())
            .await
            .expect_err("B reads A's log"),
        LedgerError::ProjectNotFound(pa)
    );
    assert!(ledger.manifest(tb, pa, main, None).await.is_err());
    assert!(ledger.path_history(tb, pa, main, "a", None).await.is_err());
    assert!(ledger.fork(tb, pa, main, 0).await.is_err());
    assert_eq!(
        ledger
            .fork_with_id(tb, pa, main, None, TimelineId::new())
            .await
            .expect_err("B forks A's project"),
        LedgerError::ProjectNotFound(pa)
    );
    // B registers the same device and appends into A's project id: refused.
    ledger
        .register_device(tb, r.key.device_id(), &r.key.public_key(), "laptop")
        .await
        .expect("register in B");
    assert_eq!(
        ledger
            .append(tb, &r.batch(ev))
            .await
            .expect_err("B writes A's project"),
        LedgerError::ProjectNotFound(pa)
    );
    assert_eq!(
        ledger
            .device(tb, r.key.device_id())
            .await
            .expect("B's own device")
            .id,
        r.key.device_id()
    );
    // An unknown tenant.
    let nobody = TenantId::new();
    assert_eq!(
        ledger.projects(nobody).await.expect_err("no tenant"),
        LedgerError::TenantNotFound(nobody)
    );
    // The feed names the tenant of each append.
    let feed = ledger.feed(None, 10_000).await.expect("feed");
    let mine: Vec<_> = feed.iter().filter(|f| f.project == pa).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].tenant, ta);
    assert_eq!(
        ledger
            .feed_events(mine[0])
            .await
            .expect("feed events")
            .len(),
        2
    );
    assert_eq!(all_events(&ledger, ta, pa).await.len(), 2);
}

async fn reads_history_manifests_forks<K: OrderedKv>(ledger: Ledger<K>) {
    let (tenant, project, main) = tenant_with_project(&ledger).await;
    let mut r = device(&ledger, tenant, project, main).await;
    let e1 = vec![
        r.write("a.txt", b"a1", 10_000),
        r.write("src/b.rs", b"b1", 10_001),
        r.event_at(10_002, tool(0)),
    ];
    let v1 = ledger.append(tenant, &r.batch(e1)).await.expect("v1");
    let v1 = horde_ledger::stamp_version(&v1.written[0].1);
    let e2 = vec![
        r.write("a.txt", b"a2", 20_000),
        r.event_at(20_001, delete("src/b.rs")),
    ];
    let v2 = ledger.append(tenant, &r.batch(e2)).await.expect("v2");
    let v2 = horde_ledger::stamp_version(&v2.written[0].1);
    let hash = |c: &[u8]| horde_core::BlobHash::of(c).to_vec();
    // Manifests.
    let m1 = ledger
        .manifest(tenant, project, main, Some(v1))
        .await
        .expect("m1");
    assert_eq!(
        m1.files.keys().collect::<Vec<_>>(),
        vec!["a.txt", "src/b.rs"]
    );
    assert_eq!(m1.files["a.txt"].hash, hash(b"a1"));
    let m2 = ledger
        .manifest(tenant, project, main, None)
        .await
        .expect("m2");
    assert_eq!(m2.files.keys().collect::<Vec<_>>(), vec!["a.txt"]);
    assert_eq!(m2.files["a.txt"].hash, hash(b"a2"));
    assert!(
        ledger
            .manifest(tenant, project, main, Some(v1 - 1))
            .await
            .expect("m0")
            .files
            .is_empty()
    );
    let last = ledger.last_version().await.expect("last");
    assert!(matches!(
        ledger
            .manifest(tenant, project, main, Some(last + 1_000_000_000))
            .await,
        Err(LedgerError::VersionInFuture { .. })
    ));
    // Path history.
    let h = ledger
        .path_history(tenant, project, main, "src/b.rs", None)
        .await
        .expect("history");
    assert_eq!(
        h.iter().map(|v| v.exists).collect::<Vec<_>>(),
        vec![true, false]
    );
    // Events by type, version and time.
    let changes = ledger
        .events(
            tenant,
            project,
            &EventFilter {
                kinds: vec!["state_change".into()],
                ..Default::default()
            },
        )
        .await
        .expect("by kind");
    assert_eq!(changes.len(), 4);
    let first = ledger
        .events(
            tenant,
            project,
            &EventFilter {
                to_version: Some(v1),
                ..Default::default()
            },
        )
        .await
        .expect("by version");
    assert_eq!(first.len(), 3);
    let second = ledger
        .events(
            tenant,
            project,
            &EventFilter {
                from_version: Some(v2),
                ..Default::default()
            },
        )
        .await
        .expect("from version");
    assert_eq!(second.len(), 2);
    let timed = ledger
        .events_in_time(tenant, project, 10_001, 20_000, &EventFilter::default())
        .await
        .expect("by time");
    assert_eq!(
        timed
            .iter()
            .map(|e| e.body.occurred_at / 1000)
            .collect::<Vec<_>>(),
        vec![10_001, 10_002, 20_000]
    );
    assert!(matches!(
        ledger
            .events_in_time(tenant, project, 5, 4, &EventFilter::default())
            .await,
        Err(LedgerError::Invalid(_))
    ));
    assert_eq!(
        ledger
            .version_at_time(tenant, project, 15_000)
            .await
            .expect("at time"),
        Some(v1)
    );
    assert_eq!(
        ledger
            .version_at_time(tenant, project, 25_000)
            .await
            .expect("at time"),
        Some(v2)
    );
    assert_eq!(
        ledger
            .version_at_time(tenant, project, 5_000)
            .await
            .expect("at time"),
        None
    );
    // Fork at v1: the fork sees b.rs and a1, then its own change; main is unaffected.
    let fork = ledger.fork(tenant, project, main, v1).await.expect("fork");
    assert_eq!(
        ledger
            .timelines(tenant, project)
            .await
            .expect("timelines")
            .len(),
        2
    );
    let mf = ledger
        .manifest(tenant, project, fork.id, None)
        .await
        .expect("fork manifest");
    assert_eq!(
        mf.files.keys().collect::<Vec<_>>(),
        vec!["a.txt", "src/b.rs"]
    );
    assert_eq!(mf.files["a.txt"].hash, hash(b"a1"));
    let mut f = Recorder::new(project, fork.id);
    ledger
        .register_device(tenant, f.key.device_id(), &f.key.public_key(), "fork box")
        .await
        .expect("register");
    let ev = vec![
        f.write("c.md", b"c", 30_000),
        f.event_at(30_001, delete("a.txt")),
    ];
    ledger
        .append(tenant, &f.batch(ev))
        .await
        .expect("append on fork");
    let mf = ledger
        .manifest(tenant, project, fork.id, None)
        .await
        .expect("fork manifest");
    assert_eq!(
        mf.files.keys().collect::<Vec<_>>(),
        vec!["c.md", "src/b.rs"]
    );
    let h = ledger
        .path_history(tenant, project, fork.id, "a.txt", None)
        .await
        .expect("fork history");
    assert_eq!(
        h.iter().map(|v| v.exists).collect::<Vec<_>>(),
        vec![true, false],
        "a1 inherited, then the fork's delete; not main's a2"
    );
    assert_eq!(
        ledger
            .manifest(tenant, project, main, None)
            .await
            .expect("main")
            .files
            .keys()
            .collect::<Vec<_>>(),
        vec!["a.txt"]
    );
    assert!(matches!(
        ledger
            .fork(tenant, project, main, last + 1_000_000_000)
            .await,
        Err(LedgerError::VersionInFuture { .. })
    ));
    assert!(matches!(
        ledger.fork(tenant, project, TimelineId::new(), v1).await,
        Err(LedgerError::TimelineNotFound(_))
    ));
    // A fork with the caller's id is idempotent for the same parent and version.
    let chosen = TimelineId::new();
    let (made, created) = ledger
        .fork_with_id(tenant, project, main, Some(v1), chosen)
        .await
        .expect("fork with id");
    assert!(created);
    assert_eq!(
        (made.id, made.parent, made.fork_version),
        (chosen, Some(main), Some(v1))
    );
    let (again, created) = ledger
        .fork_with_id(tenant, project, main, Some(v1), chosen)
        .await
        .expect("same fork again");
    assert!(!created);
    assert_eq!(again, made);
    let (any_version, created) = ledger
        .fork_with_id(tenant, project, main, None, chosen)
        .await
        .expect("same parent, no version asked");
    assert!(!created);
    assert_eq!(any_version, made);
    for (parent, version) in [(main, Some(v2)), (fork.id, Some(v1)), (fork.id, None)] {
        assert_eq!(
            ledger
                .fork_with_id(tenant, project, parent, version, chosen)
                .await
                .expect_err("another origin"),
            LedgerError::TimelineExists {
                id: chosen,
                parent: Some(main),
                fork_version: Some(v1)
            }
        );
    }
    // The main timeline's id cannot be forked into.
    assert!(matches!(
        ledger
            .fork_with_id(tenant, project, fork.id, Some(v1), main)
            .await,
        Err(LedgerError::TimelineExists { parent: None, .. })
    ));
    // Without a version: the last committed one.
    let (latest, created) = ledger
        .fork_with_id(tenant, project, main, None, TimelineId::new())
        .await
        .expect("fork at the latest version");
    assert!(created);
    let fork_version = latest.fork_version.expect("a fork version");
    assert!(fork_version >= v2 && fork_version <= ledger.last_version().await.expect("last"));
    // Indexer cursors.
    let feed = ledger.feed(None, 10_000).await.expect("feed");
    ledger
        .set_indexer_cursor("clickhouse", &feed[0].versionstamp)
        .await
        .expect("set cursor");
    assert_eq!(
        ledger.indexer_cursor("clickhouse").await.expect("cursor"),
        Some(feed[0].versionstamp.clone())
    );
    assert_eq!(
        ledger
            .feed(Some(&feed[0].versionstamp), 10_000)
            .await
            .expect("rest")
            .len(),
        feed.len() - 1
    );
}

/// Bounded filtered pages, lookups by event id, device and key listings.
async fn pages_ids_and_listings<K: OrderedKv>(ledger: Ledger<K>) {
    let (tenant, project, timeline) = tenant_with_project(&ledger).await;
    let mut a = device(&ledger, tenant, project, timeline).await;
    let b = device(&ledger, tenant, project, timeline).await;
    let mut events = a.tool(50);
    events.push(a.write("src/lib.rs", b"x", 5_000));
    events.extend(a.tool(50));
    ledger
        .append(tenant, &a.batch(events.clone()))
        .await
        .expect("append");

    // A filter that matches one event in 101 pages through the log with a cursor, each page
    // examining at most `max_scan` entries.
    let filter = EventFilter {
        path: Some("src/lib.rs".into()),
        ..Default::default()
    };
    let mut found = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let f = EventFilter {
            after: after.clone(),
            ..filter.clone()
        };
        let page = ledger
            .events_page(tenant, project, &f, 20)
            .await
            .expect("page");
        pages += 1;
        found.extend(page.events.iter().map(|e| e.body.seq));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(found, [51]);
    assert_eq!(pages, 6, "101 entries, 20 per page");
    let by_agent = EventFilter {
        agent: Some("nobody".into()),
        ..Default::default()
    };
    assert!(
        ledger
            .events(tenant, project, &by_agent)
            .await
            .expect("read")
            .is_empty()
    );
    let limited = EventFilter {
        limit: Some(101),
        ..Default::default()
    };
    let page = ledger
        .events_page(tenant, project, &limited, usize::MAX)
        .await
        .expect("page");
    assert_eq!(
        (page.events.len(), page.next),
        (101, None),
        "an exact last page has no cursor"
    );

    // Newest first: pages walk back through the whole log, each resuming before the last
    // event it returned; a filtered backward read examines at most `max_scan` entries a page.
    let mut seqs = Vec::new();
    let mut after = None;
    loop {
        let f = EventFilter {
            newest_first: true,
            limit: Some(7),
            after: after.clone(),
            ..Default::default()
        };
        let page = ledger
            .events_page(tenant, project, &f, usize::MAX)
            .await
            .expect("page");
        seqs.extend(page.events.iter().map(|e| e.body.seq));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seqs, (1..=101).rev().collect::<Vec<u64>>());
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let f = EventFilter {
            newest_first: true,
            after: after.clone(),
            ..filter.clone()
        };
        let page = ledger
            .events_page(tenant, project, &f, 20)
            .await
            .expect("page");
        assert!(page.events.len() <= 1);
        found.extend(page.events.iter().map(|e| e.body.seq));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(found, [51]);

    // Event ids.
    let body = horde_core::decode_event(&events[7].body, &events[7].hash).expect("decode");
    let id = horde_core::EventId::from_slice(&body.event_id).expect("id");
    let e = ledger
        .event_by_id(tenant, project, id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(e.body.seq, 8);
    assert!(
        ledger
            .event_by_id(tenant, project, horde_core::EventId::new())
            .await
            .expect("read")
            .is_none()
    );
    let (other, _) = ledger
        .create_tenant(&unique("other"), "o@example.com")
        .await
        .expect("tenant");
    assert!(matches!(
        ledger.event_by_id(other.id, project, id).await,
        Err(LedgerError::ProjectNotFound(_))
    ));

    // Reads longer than one range batch (1,000 entries) go on to the end.
    let more = a.tool(1_500);
    ledger.append(tenant, &a.batch(more)).await.expect("append");
    let all = ledger
        .events(tenant, project, &EventFilter::default())
        .await
        .expect("read");
    assert_eq!(all.len(), 1_601);
    let timed = ledger
        .events_in_time(tenant, project, 0, i64::MAX / 2, &EventFilter::default())
        .await
        .expect("read");
    assert_eq!(timed.len(), 1_601);

    // Listings stay within the tenant.
    let devices = ledger.devices(tenant).await.expect("devices");
    let mut ids: Vec<_> = devices.iter().map(|d| d.id).collect();
    ids.sort();
    let mut want = vec![a.key.device_id(), b.key.device_id()];
    want.sort();
    assert_eq!(ids, want);
    assert!(ledger.devices(other.id).await.expect("devices").is_empty());
    let users = ledger.users(tenant).await.expect("users");
    let k1 = ledger
        .create_api_key(tenant, users[0].id, Role::Admin, "one")
        .await
        .expect("key");
    ledger
        .create_api_key(tenant, users[0].id, Role::Viewer, "two")
        .await
        .expect("key");
    assert_eq!(ledger.api_keys(tenant).await.expect("keys").len(), 2);
    assert!(ledger.api_keys(other.id).await.expect("keys").is_empty());
    assert_eq!(
        ledger.api_key(tenant, k1.key.id).await.expect("key"),
        Some(k1.key.clone())
    );
    assert_eq!(
        ledger.api_key(other.id, k1.key.id).await.expect("key"),
        None
    );
    ledger
        .revoke_api_key(tenant, k1.key.id)
        .await
        .expect("revoke");
    assert_eq!(ledger.api_keys(tenant).await.expect("keys").len(), 1);
}

/// Pages for a device catching up: every other device's events, a cursor that also moves
/// over excluded and filtered entries, a byte budget; and the checkpoint index.
async fn pull_pages_and_checkpoints<K: OrderedKv>(ledger: Ledger<K>) {
    let (tenant, project, main) = tenant_with_project(&ledger).await;
    let mut a = device(&ledger, tenant, project, main).await;
    let mut b = device(&ledger, tenant, project, main).await;
    // A: 3 events, B: 2, A: 1 (B's are the tail of the log).
    let ev = a.tool(3);
    ledger.append(tenant, &a.batch(ev)).await.expect("a1");
    let ev = b.tool(2);
    ledger.append(tenant, &b.batch(ev)).await.expect("b1");
    let ev = vec![a.write("x", b"x", 5_000)];
    ledger.append(tenant, &a.batch(ev)).await.expect("a2");
    let ev = b.tool(1);
    ledger.append(tenant, &b.batch(ev)).await.expect("b2");
    let all = all_events(&ledger, tenant, project).await;
    assert_eq!(all.len(), 7);

    // B pulls A's events, two per page; the cursor passes B's own.
    let not_b = EventFilter {
        exclude_device: Some(b.key.device_id()),
        limit: Some(2),
        ..Default::default()
    };
    let page = ledger
        .events_page(tenant, project, &not_b, 10_000)
        .await
        .expect("page 1");
    assert_eq!(page.events.len(), 2);
    assert_eq!(page.examined, Some(all[1].versionstamp.clone()));
    assert!(page.next.is_some());
    let page = ledger
        .events_page(
            tenant,
            project,
            &EventFilter {
                after: page.examined,
                ..not_b.clone()
            },
            10_000,
        )
        .await
        .expect("page 2");
    let seqs: Vec<u64> = page.events.iter().map(|e| e.body.seq).collect();
    assert_eq!(seqs, [3, 4]);
    assert!(
        page.events
            .iter()
            .all(|e| e.body.device_id == a.key.device_id().as_bytes())
    );
    // The limit was reached on A's last event: B's last one is not examined yet.
    assert_eq!(page.examined, Some(all[5].versionstamp.clone()));
    let page = ledger
        .events_page(
            tenant,
            project,
            &EventFilter {
                after: page.examined,
                ..not_b.clone()
            },
            10_000,
        )
        .await
        .expect("page 3");
    // Only B's own event was left: nothing, but the cursor moved to the end.
    assert!(page.events.is_empty() && page.next.is_none());
    assert_eq!(page.examined, Some(all[6].versionstamp.clone()));
    // At most `max_scan` entries are examined, even when none is wanted.
    let only_b_scan = ledger
        .events_page(
            tenant,
            project,
            &EventFilter {
                exclude_device: Some(a.key.device_id()),
                ..Default::default()
            },
            2,
        )
        .await
        .expect("bounded scan");
    assert!(only_b_scan.events.is_empty());
    assert_eq!(only_b_scan.next, Some(all[1].versionstamp.clone()));
    // A byte budget smaller than one event still gives one event per page.
    let mut after = None;
    let mut seen = 0;
    for _ in 0..10 {
        let page = ledger
            .events_page(
                tenant,
                project,
                &EventFilter {
                    max_bytes: Some(1),
                    after: after.clone(),
                    ..Default::default()
                },
                10_000,
            )
            .await
            .expect("budget page");
        if page.events.is_empty() {
            assert!(page.next.is_none());
            break;
        }
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].versionstamp, all[seen].versionstamp);
        seen += 1;
        after = page.examined;
    }
    assert_eq!(seen, 7);

    // Checkpoints: indexed by device, timeline and seq, with their place in the log.
    let manifest = |n: u8| horde_core::BlobHash::of(&[n]).to_vec();
    let cp = |m: Vec<u8>| {
        Payload::Checkpoint(proto::Checkpoint {
            manifest_blob: m,
            files: 0,
            total_bytes: 0,
        })
    };
    let none = ledger
        .latest_checkpoint(tenant, project, a.key.device_id(), main, u64::MAX)
        .await
        .expect("no checkpoint");
    assert_eq!(none, None);
    let ev = vec![
        a.event_at(6_000, cp(manifest(1))),
        a.write("y", b"y", 6_001),
    ];
    ledger.append(tenant, &a.batch(ev)).await.expect("cp1");
    let ev = vec![a.event_at(7_000, cp(manifest(2)))];
    ledger.append(tenant, &a.batch(ev)).await.expect("cp2");
    let all = all_events(&ledger, tenant, project).await;
    let at = |seq: u64| {
        all.iter()
            .find(|e| e.body.seq == seq && e.body.device_id == a.key.device_id().as_bytes())
            .expect("logged")
            .versionstamp
            .clone()
    };
    for (max, want) in [
        (4, None),
        (5, Some((5, manifest(1)))),
        (6, Some((5, manifest(1)))),
        (7, Some((7, manifest(2)))),
        (u64::MAX, Some((7, manifest(2)))),
    ] {
        let got = ledger
            .latest_checkpoint(tenant, project, a.key.device_id(), main, max)
            .await
            .expect("checkpoint");
        let want = want.map(|(seq, m)| horde_ledger::CheckpointRef {
            seq,
            versionstamp: at(seq),
            manifest: m,
        });
        assert_eq!(got, want, "latest checkpoint at or before seq {max}");
    }
    // Per device and per timeline.
    let last = ledger.last_version().await.expect("version");
    let fork = ledger
        .fork(tenant, project, main, last)
        .await
        .expect("fork");
    for (dev, tl) in [(b.key.device_id(), main), (a.key.device_id(), fork.id)] {
        let got = ledger
            .latest_checkpoint(tenant, project, dev, tl, u64::MAX)
            .await
            .expect("checkpoint");
        assert_eq!(got, None);
    }
}

fn approval(id: u8, kind: proto::approval::Kind, expires_at: i64) -> Payload {
    Payload::Approval(proto::Approval {
        request_id: vec![id; 16],
        kind: kind as i32,
        who: if kind == proto::approval::Kind::Requested {
            "agent".into()
        } else {
            "alice".into()
        },
        action: "exec".into(),
        subject: format!("git push {id}"),
        expires_at,
        ..Default::default()
    })
}

fn decision(by: &str, grant: bool) -> horde_ledger::CloudDecision {
    horde_ledger::CloudDecision {
        grant,
        by: by.into(),
        user: horde_core::UserId::new(),
        reason: String::new(),
        remember: String::new(),
        scope: String::new(),
        pattern: String::new(),
        decided_at: horde_core::time::now_micros(),
    }
}

/// Approval requests as the cloud folds them from the log, and decisions taken through the
/// API: refused when absent, answered, decided or expired; two deciders at once, one wins;
/// the decision feed lists only what the log has not answered.
async fn approvals<K: OrderedKv>(ledger: Ledger<K>) {
    use horde_ledger::{ApprovalFilter, ApprovalState, DecidedIn};
    use proto::approval::Kind;
    let (tenant, project, tl) = tenant_with_project(&ledger).await;
    let mut d = device(&ledger, tenant, project, tl).await;
    let later = horde_core::time::now_micros() + 3_600_000_000;
    let events = vec![
        d.event_at(1_000, approval(1, Kind::Requested, later)),
        d.event_at(1_001, approval(2, Kind::Requested, later)),
        d.event_at(1_002, approval(3, Kind::Requested, 1)),
        d.event_at(1_003, approval(2, Kind::Granted, 0)),
        // A policy denial: an answer without a request.
        d.event_at(1_004, approval(4, Kind::Denied, 0)),
        d.event_at(1_005, approval(5, Kind::Requested, later)),
    ];
    ledger
        .append(tenant, &d.batch(events))
        .await
        .expect("append");
    let ids = |v: &[horde_ledger::ApprovalRecord]| -> Vec<String> {
        v.iter().map(|r| r.id[..2].to_owned()).collect()
    };
    let pending = ledger
        .approvals(tenant, project, ApprovalFilter::Pending)
        .await
        .expect("list");
    assert_eq!(ids(&pending), ["01", "05"]);
    let all = ledger
        .approvals(tenant, project, ApprovalFilter::All)
        .await
        .expect("list");
    assert_eq!(ids(&all), ["01", "02", "03", "05"]);
    assert_eq!(all[1].state, ApprovalState::Granted);
    assert_eq!(all[1].decided_in, Some(DecidedIn::Log));
    assert_eq!(all[2].state, ApprovalState::Expired);

    let decide = |id: u8, by: &'static str| {
        let ledger = ledger.clone();
        async move {
            ledger
                .decide_approval(tenant, project, &[id; 16], &decision(by, true))
                .await
        }
    };
    assert!(matches!(
        decide(2, "bob").await,
        Err(LedgerError::ApprovalDecided { .. })
    ));
    assert!(matches!(
        decide(3, "bob").await,
        Err(LedgerError::ApprovalExpired { .. })
    ));
    assert!(matches!(
        decide(4, "bob").await,
        Err(LedgerError::ApprovalNotFound(_))
    ));
    assert!(matches!(
        decide(9, "bob").await,
        Err(LedgerError::ApprovalNotFound(_))
    ));
    let (other, _) = ledger
        .create_tenant(&unique("globex"), "x@example.com")
        .await
        .expect("tenant");
    assert!(matches!(
        ledger
            .decide_approval(other.id, project, &[1; 16], &decision("eve", true))
            .await,
        Err(LedgerError::ProjectNotFound(_))
    ));

    // Two people at once: exactly one decision is taken.
    let (a, b) = tokio::join!(
        tokio::spawn(decide(1, "alice")),
        tokio::spawn(decide(1, "bob"))
    );
    let results = [a.expect("task"), b.expect("task")];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(LedgerError::ApprovalDecided { .. })))
    );
    let winner = results
        .iter()
        .find_map(|r| r.as_ref().ok())
        .expect("one won")
        .decided_by
        .clone();

    let feed = ledger.decisions(tenant, project, None).await.expect("feed");
    assert_eq!(feed.len(), 1);
    assert_eq!(Some(&feed[0].decision.by), winner.as_ref());
    decide(5, "carol").await.expect("decides");
    let feed = ledger.decisions(tenant, project, None).await.expect("feed");
    assert_eq!(feed.len(), 2);
    let after = horde_kv::tuple::Versionstamp::from(
        <[u8; 12]>::try_from(hex::decode(&feed[0].cursor).expect("hex")).expect("12 bytes"),
    );
    let rest = ledger
        .decisions(tenant, project, Some(&after))
        .await
        .expect("feed");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].request_id, feed[1].request_id);
    // The edge records the decision as its answer: it leaves the feed, the log decides.
    let answer = d.event_at(2_000, approval(1, Kind::Granted, 0));
    ledger
        .append(tenant, &d.batch(vec![answer]))
        .await
        .expect("append");
    let feed = ledger.decisions(tenant, project, None).await.expect("feed");
    assert_eq!(feed.len(), 1, "only request 5's decision is left");
    let one = ledger
        .approval(tenant, project, &[1; 16])
        .await
        .expect("one");
    assert_eq!(one.decided_in, Some(DecidedIn::Log));
}

fn mcp_call(tool: &str, i: u64) -> horde_ledger::McpCall {
    horde_ledger::McpCall {
        at: 1_000 + i as i64,
        key: horde_core::ApiKeyId::new(),
        user: horde_core::UserId::new(),
        client: "claude-code".into(),
        call_id: i.to_string(),
        tool: tool.into(),
        args: vec![format!("limit={i}")],
        summary: "ok".into(),
        error: None,
        duration_ms: i,
    }
}

/// The record of MCP calls: in call order, paged, per project, refused whole when too large
/// or not the tenant's.
async fn mcp_calls<K: OrderedKv>(ledger: Ledger<K>) {
    let (tenant, project, _) = tenant_with_project(&ledger).await;
    let (other, other_project, _) = tenant_with_project(&ledger).await;
    let calls: Vec<_> = (0..5).map(|i| mcp_call("log", i)).collect();
    for c in &calls {
        ledger
            .record_mcp_call(tenant, project, c)
            .await
            .expect("recorded");
    }
    let all = ledger
        .mcp_calls(tenant, project, None, 100)
        .await
        .expect("list");
    assert_eq!(
        all.iter().map(|e| e.call.clone()).collect::<Vec<_>>(),
        calls
    );
    // Pages resume after their last entry.
    let first = ledger
        .mcp_calls(tenant, project, None, 2)
        .await
        .expect("page");
    assert_eq!(first.len(), 2);
    let rest = ledger
        .mcp_calls(tenant, project, Some(&first[1].cursor), 100)
        .await
        .expect("rest");
    assert_eq!(rest.len(), 3);
    assert_eq!(rest[0].call, calls[2]);
    // Too large: refused, nothing written.
    let mut big = mcp_call("show", 9);
    big.error = Some("x".repeat(horde_ledger::MAX_MCP_CALL_BYTES));
    assert!(matches!(
        ledger.record_mcp_call(tenant, project, &big).await,
        Err(LedgerError::Invalid(_))
    ));
    // Another tenant's project is not found, both ways, and its own record stays empty.
    assert!(matches!(
        ledger.record_mcp_call(other, project, &calls[0]).await,
        Err(LedgerError::ProjectNotFound(_))
    ));
    assert!(matches!(
        ledger.mcp_calls(other, project, None, 10).await,
        Err(LedgerError::ProjectNotFound(_))
    ));
    assert!(
        ledger
            .mcp_calls(other, other_project, None, 10)
            .await
            .expect("empty")
            .is_empty()
    );
    assert_eq!(
        ledger
            .mcp_calls(tenant, project, None, 100)
            .await
            .expect("list")
            .len(),
        5
    );
}

fn sqlite_ledger() -> (tempfile::TempDir, Ledger<SqliteKv>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = SqliteKv::open(dir.path().join("cloud.sqlite")).expect("open");
    (dir, Ledger::new(kv))
}

macro_rules! on_sqlite {
    ($($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_dir, ledger) = sqlite_ledger();
            super::$name(ledger).await;
        }
    )*};
}

mod sqlite {
    use super::*;
    on_sqlite!(
        tenants_users_keys,
        append_exactly_once,
        unknown_timeline_is_refused,
        big_batches_split,
        heads,
        isolation,
        reads_history_manifests_forks,
        pages_ids_and_listings,
        pull_pages_and_checkpoints,
        approvals,
        mcp_calls
    );

    /// A record whose commit answered "unknown result" (but applied) is retried and written
    /// once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_mcp_call_record_is_written_once() {
        let (_dir, ledger) = sqlite_ledger();
        let (tenant, project, _) = tenant_with_project(&ledger).await;
        ledger.kv().inject_unknown_results(1);
        let r = ledger
            .record_mcp_call(tenant, project, &mcp_call("log", 1))
            .await;
        ledger.kv().inject_unknown_results(0);
        r.expect("recorded");
        let all = ledger
            .mcp_calls(tenant, project, None, 10)
            .await
            .expect("list");
        assert_eq!(all.len(), 1, "{all:?}");
    }

    /// A decision whose commit answered "unknown result" (but applied) is retried and answers
    /// the decision, not "already decided" by itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_decision_is_not_its_own_conflict() {
        let (_dir, ledger) = sqlite_ledger();
        let (tenant, project, tl) = tenant_with_project(&ledger).await;
        let mut d = device(&ledger, tenant, project, tl).await;
        let later = horde_core::time::now_micros() + 3_600_000_000;
        let ev = d.event_at(1_000, approval(1, proto::approval::Kind::Requested, later));
        ledger
            .append(tenant, &d.batch(vec![ev]))
            .await
            .expect("append");
        ledger.kv().inject_unknown_results(1);
        let r = ledger
            .decide_approval(tenant, project, &[1; 16], &decision("alice", true))
            .await;
        ledger.kv().inject_unknown_results(0);
        assert_eq!(
            r.expect("decided").state,
            horde_ledger::ApprovalState::Granted
        );
        let feed = ledger.decisions(tenant, project, None).await.expect("feed");
        assert_eq!(feed.len(), 1, "one decision");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_commit_results() {
        let (_dir, ledger) = sqlite_ledger();
        let kv = ledger.kv().clone();
        super::unknown_commit_results(ledger, true, move |n| kv.inject_unknown_results(n)).await;
    }
}

/// Prints past the test harness's output capture, so the skip shows in every run.
macro_rules! skip_line {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foundationdb() {
    let Some(cluster) = std::env::var_os("HORDE_FDB_CLUSTER_FILE") else {
        skip_line!(
            "skipped: ledger on FoundationDB — HORDE_FDB_CLUSTER_FILE is not set (see fdb-cluster/README.md)"
        );
        return;
    };
    #[cfg(feature = "fdb")]
    {
        let open = || {
            Ledger::new(
                horde_kv::fdb::FdbKv::open(Some(std::path::Path::new(&cluster)))
                    .expect("open the cluster"),
            )
        };
        tenants_users_keys(open()).await;
        append_exactly_once(open()).await;
        unknown_timeline_is_refused(open()).await;
        big_batches_split(open()).await;
        heads(open()).await;
        isolation(open()).await;
        reads_history_manifests_forks(open()).await;
        pages_ids_and_listings(open()).await;
        pull_pages_and_checkpoints(open()).await;
        approvals(open()).await;
        mcp_calls(open()).await;
        // FoundationDB's own commit_unknown_result cannot be injected from a client; the
        // exactly-once rules are the same code as above.
        unknown_commit_results(open(), false, |_| {}).await;
    }
    #[cfg(not(feature = "fdb"))]
    {
        let _ = cluster;
        skip_line!("skipped: ledger on FoundationDB — built without `--features fdb`");
    }
}
