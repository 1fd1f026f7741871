//! The way back from the cloud, against the real `horde-cloud`: `GET …/pull` (pages of the
//! project's log for a device catching up: others' events, exact cursors across pages and
//! restarts, limits, signed heads) and `GET …/restore?at=EVENT` (the tree as the event's
//! device had it, not what other devices did meanwhile).

use std::collections::{BTreeMap, HashMap};

use horde_core::proto::{self, FileKind, event_body::Payload, state_change::Op};
use horde_core::{
    BlobHash, ChainVerifier, DeviceId, EventId, ProjectId, TimelineId, decode_event, verify_head,
};
use horde_e2e::{
    Api, Cloud, SimDevice, ack, delete_file, pull, tar_entries, tool_call, upload_blob,
};
use serde_json::json;

fn hex(b: &[u8]) -> String {
    horde_e2e::hex_encode(b)
}

fn device_of(e: &proto::SignedEvent) -> (DeviceId, u64) {
    let body = decode_event(&e.body, &e.hash).expect("a stored event decodes");
    (
        DeviceId::from_slice(&body.device_id).expect("device id"),
        body.seq,
    )
}

/// Every event a device has sent, by hash, as it sent them.
type Sent = HashMap<Vec<u8>, proto::SignedEvent>;

fn send(api: &Api, dev: &SimDevice, events: Vec<proto::SignedEvent>, sent: &mut Sent) {
    for e in &events {
        sent.insert(e.hash.clone(), e.clone());
    }
    let a = ack(&api.sync(dev.project, dev.encoded(events.clone())));
    assert_eq!(a.versionstamps.len(), events.len());
}

/// The project's log as `/events` lists it: (versionstamp, device) in log order.
fn log_of(api: &Api, project: ProjectId) -> Vec<(Vec<u8>, DeviceId)> {
    let (events, _) = api.all_events(project, 1000);
    events
        .iter()
        .map(|e| {
            let vs = e["versionstamp"].as_str().expect("versionstamp");
            let vs: Vec<u8> = (0..vs.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&vs[i..i + 2], 16).expect("hex"))
                .collect();
            (
                vs,
                e["device"].as_str().expect("device").parse().expect("id"),
            )
        })
        .collect()
}

/// What a device catching up keeps: every pulled event, each device's chain verified as it
/// arrives, the heads it was given.
struct Puller {
    events: Vec<proto::PulledEvent>,
    chains: HashMap<DeviceId, ChainVerifier>,
    heads: HashMap<DeviceId, proto::ChainHead>,
    cursor: Vec<u8>,
    pages: usize,
}

impl Puller {
    fn new() -> Self {
        Puller {
            events: Vec::new(),
            chains: HashMap::new(),
            heads: HashMap::new(),
            cursor: Vec::new(),
            pages: 0,
        }
    }

    /// Pulls one page after the current cursor; whether the log goes on.
    fn page(&mut self, api: &Api, project: ProjectId, extra: &str) -> bool {
        let mut q = format!("?{extra}");
        if !self.cursor.is_empty() {
            q.push_str(&format!("&after={}", hex(&self.cursor)));
        }
        let (r, page) = pull(api, project, &q);
        let page = page.unwrap_or_else(|| panic!("pull{q}: {} {}", r.status, r.body));
        self.pages += 1;
        // The cursor only moves forward, and past every event of the page.
        assert!(page.cursor >= self.cursor, "pull{q}: the cursor went back");
        let mut in_page: Vec<DeviceId> = Vec::new();
        for pe in &page.events {
            assert_eq!(pe.versionstamp.len(), 12);
            assert!(pe.versionstamp > self.cursor && pe.versionstamp <= page.cursor);
            if let Some(last) = self.events.last() {
                assert!(pe.versionstamp > last.versionstamp, "log order");
            }
            let ev = pe.event.as_ref().expect("an event");
            let (device, _) = device_of(ev);
            self.chains
                .entry(device)
                .or_insert_with(|| ChainVerifier::new(decode_project(ev), device))
                .push(&ev.body, &ev.hash)
                .expect("each device's events arrive in seq order on an unbroken chain");
            if !in_page.contains(&device) {
                in_page.push(device);
            }
            self.events.push(pe.clone());
        }
        // One head per device of the page, signed by it, at or past its events.
        let mut head_devices: Vec<DeviceId> = page
            .heads
            .iter()
            .map(|h| DeviceId::from_slice(&h.device_id).expect("device id"))
            .collect();
        head_devices.sort();
        in_page.sort();
        assert_eq!(head_devices, in_page, "heads of exactly the page's devices");
        for h in &page.heads {
            verify_head(h).expect("a valid signature");
            let device = DeviceId::from_slice(&h.device_id).expect("device id");
            assert!(h.seq >= self.chains[&device].tip().seq);
            self.heads.insert(device, h.clone());
        }
        if !page.cursor.is_empty() {
            self.cursor = page.cursor;
        }
        page.more
    }

    fn all(&mut self, api: &Api, project: ProjectId, extra: &str) {
        for _ in 0..10_000 {
            if !self.page(api, project, extra) {
                return;
            }
        }
        panic!("pull never caught up");
    }

    /// Every head the puller holds signs an event it holds, with that event's hash.
    fn check_heads(&self) {
        for (device, h) in &self.heads {
            let ev = self
                .events
                .iter()
                .map(|pe| pe.event.as_ref().expect("event"))
                .find(|e| device_of(e) == (*device, h.seq))
                .expect("the head's event was pulled");
            assert_eq!(ev.hash, h.hash);
        }
    }
}

fn decode_project(e: &proto::SignedEvent) -> ProjectId {
    let body = decode_event(&e.body, &e.hash).expect("decodes");
    ProjectId::from_slice(&body.project_id).expect("project id")
}

#[test]
fn pull_pages_exclude_the_caller_and_resume_exactly() {
    let cloud = Cloud::start();
    let t = cloud.tenant("pull");
    let (project, main) = t.project("web");
    let mut devs: Vec<SimDevice> = (0..3).map(|_| SimDevice::new(project, main)).collect();
    for d in &devs {
        assert_eq!(d.register(&t.api).status, 201);
    }
    let mut sent = Sent::new();

    // An empty log: nothing, no cursor, caught up.
    let (_, page) = pull(&t.api, project, "");
    let page = page.expect("a page");
    assert!(page.events.is_empty() && page.heads.is_empty() && page.cursor.is_empty());
    assert!(!page.more);

    // Interleaved batches of three devices, on two timelines.
    let fork = t.api.post(
        &format!("/v1/projects/{project}/timelines"),
        &json!({ "timeline_id": TimelineId::new().to_string() }),
    );
    assert_eq!(fork.status, 201, "{}", fork.body);
    let fork: TimelineId = fork.json["id"].as_str().expect("id").parse().expect("uuid");
    for round in 0..4 {
        for (i, d) in devs.iter_mut().enumerate() {
            if round == 2 && i == 1 {
                d.timeline = fork;
            }
            let events = d.tools(2 + i + round);
            let (api, dev) = (&t.api, &*d);
            send(api, dev, events, &mut sent);
        }
    }
    let log = log_of(&t.api, project);
    assert_eq!(log.len(), sent.len());
    let ids: Vec<DeviceId> = devs.iter().map(|d| d.key.device_id()).collect();
    let (a, b) = (ids[0], ids[1]);

    // Device A catches up, 4 events a page: everything but its own, in log order.
    let mut p = Puller::new();
    p.all(&t.api, project, &format!("exclude_device={a}&limit=4"));
    let want: Vec<&Vec<u8>> = log
        .iter()
        .filter(|(_, d)| *d != a)
        .map(|(vs, _)| vs)
        .collect();
    let got: Vec<&Vec<u8>> = p.events.iter().map(|e| &e.versionstamp).collect();
    assert_eq!(got, want, "no event twice, none missed");
    assert!(p.pages >= want.len() / 4);
    for pe in &p.events {
        let ev = pe.event.as_ref().expect("event");
        assert_eq!(sent.get(&ev.hash), Some(ev), "each event exactly as sent");
    }
    // The cursor ends at the last log entry, even though it is A's own.
    let last = &log.last().expect("events").0;
    assert_eq!(&p.cursor, last);
    p.check_heads();
    // Caught up: nothing more, the cursor stays.
    let (_, page) = pull(&t.api, project, &format!("?after={}", hex(last)));
    let page = page.expect("a page");
    assert!(page.events.is_empty() && !page.more);
    assert_eq!(&page.cursor, last);

    // Without exclusion: everything; limit 1: one event a page.
    let mut everything = Puller::new();
    everything.all(&t.api, project, "limit=1");
    assert_eq!(everything.events.len(), log.len());
    assert_eq!(
        everything.pages,
        log.len(),
        "the last page says it is the last"
    );
    everything.check_heads();

    // B catches up in two halves, with a cloud restart in between.
    let mut half = Puller::new();
    for _ in 0..3 {
        assert!(half.page(&t.api, project, &format!("exclude_device={b}&limit=3")));
    }
    let dir = cloud.into_dir();
    let cloud = Cloud::start_in(dir, &[], &[]);
    let api = Api::new(&cloud.url, t.api.key.as_deref());
    // New events while B was away, from A and from B itself.
    let events = devs[0].tools(3);
    send(&api, &devs[0], events, &mut sent);
    let events = devs[1].tools(2);
    send(&api, &devs[1], events, &mut sent);
    half.all(&api, project, &format!("exclude_device={b}&limit=3"));
    let log = log_of(&api, project);
    let want: Vec<&Vec<u8>> = log
        .iter()
        .filter(|(_, d)| *d != b)
        .map(|(vs, _)| vs)
        .collect();
    let got: Vec<&Vec<u8>> = half.events.iter().map(|e| &e.versionstamp).collect();
    assert_eq!(got, want, "resumed exactly across the restart");
    half.check_heads();

    // A viewer pulls; another tenant's key and unknown projects get 404s; no key 401.
    let admin = horde_e2e::Admin {
        api: api.clone(),
        tenant_id: t.tenant_id.clone(),
        user_id: t.user_id.clone(),
    };
    let viewer_key = admin.user_key("viewer@example.com", "viewer");
    let (r, page) = pull(&viewer_key, project, "?limit=2");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(page.expect("page").events.len(), 2);
    let other = cloud.tenant("other");
    for (api, path) in [
        (&other.api, format!("/v1/projects/{project}/pull")),
        (&api, format!("/v1/projects/{}/pull", ProjectId::new())),
        (&api, "/v1/projects/nope/pull".to_owned()),
    ] {
        let r = api.get(&path);
        assert_eq!(
            (r.status, r.code()),
            (404, "not_found"),
            "{path}: {}",
            r.body
        );
    }
    let r = cloud.api(None).get(&format!("/v1/projects/{project}/pull"));
    assert_eq!(r.status, 401);

    // Bad inputs: 400s naming the input.
    for (q, needle) in [
        ("?after=xyz", "after"),
        ("?after=00112233", "after"),
        (&*format!("?after={}", "0".repeat(26)), "after"),
        ("?exclude_device=laptop", "exclude_device"),
        ("?limit=0", "limit"),
        ("?limit=5001", "limit"),
        ("?limit=many", "limit"),
        ("?limit=-1", "limit"),
    ] {
        let (r, _) = pull(&api, project, q);
        assert_eq!(
            (r.status, r.code()),
            (400, "bad_request"),
            "{q}: {}",
            r.body
        );
        let message = r.json["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{q}: {message}");
    }
    let (r, _) = pull(&api, project, "?limit=5000");
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn pull_pages_are_bounded_by_bytes_and_by_entries_examined() {
    let cloud = Cloud::start();
    let t = cloud.tenant("pull-limits");
    let (project, main) = t.project("web");
    let mut big = SimDevice::new(project, main);
    let mut busy = SimDevice::new(project, main);
    let mut quiet = SimDevice::new(project, main);
    for d in [&big, &busy, &quiet] {
        assert_eq!(d.register(&t.api).status, 201);
    }
    let mut sent = Sent::new();

    // 60 events of ~80 kB (4.8 MB): more than one page's 4 MiB.
    for _ in 0..3 {
        let events: Vec<proto::SignedEvent> = (0..20)
            .map(|i| {
                big.event(Payload::ToolCall(proto::ToolCall {
                    tool: "exec".into(),
                    result_summary: format!("{i:02}{}", "x".repeat(80_000)),
                    ..Default::default()
                }))
            })
            .collect();
        send(&t.api, &big, events, &mut sent);
    }
    let (_, page) = pull(&t.api, project, "?limit=5000");
    let page = page.expect("page");
    let bytes: usize = page
        .events
        .iter()
        .map(|e| prost::Message::encoded_len(e.event.as_ref().expect("event")))
        .sum();
    assert!(page.more, "the byte budget ends the page");
    assert!(
        (40..60).contains(&page.events.len()) && bytes <= 4 << 20,
        "{} events, {bytes} bytes",
        page.events.len()
    );
    let mut p = Puller::new();
    p.all(&t.api, project, "limit=5000");
    assert_eq!(p.events.len(), 60);
    assert_eq!(p.pages, 2);

    // 10,000 log entries of one device, then one of another: a page that excludes the
    // first examines 10,000 entries, finds nothing and says to go on.
    for _ in 0..2 {
        let events = busy.tools(5_000);
        send(&t.api, &busy, events, &mut sent);
    }
    let events = quiet.tools(1);
    send(&t.api, &quiet, events, &mut sent);
    let after = hex(&p.cursor);
    let busy_id = busy.key.device_id();
    let (_, page) = pull(
        &t.api,
        project,
        &format!("?after={after}&exclude_device={busy_id}"),
    );
    let page = page.expect("page");
    assert!(page.events.is_empty() && page.heads.is_empty());
    assert!(page.more, "an empty page that says to go on");
    let log = log_of(&t.api, project);
    assert_eq!(
        page.cursor,
        log[60 + 9_999].0,
        "the 10,000th entry examined"
    );
    let (_, next) = pull(
        &t.api,
        project,
        &format!("?after={}&exclude_device={busy_id}", hex(&page.cursor)),
    );
    let next = next.expect("page");
    assert_eq!(next.events.len(), 1);
    assert_eq!(
        device_of(next.events[0].event.as_ref().expect("event")).0,
        quiet.key.device_id()
    );
    assert!(!next.more);
    assert_eq!(next.heads.len(), 1);
}

/// A file change with its blob uploaded.
fn put(api: &Api, dev: &mut SimDevice, path: &str, content: &str) -> proto::SignedEvent {
    let content = content.as_bytes();
    let hash = upload_blob(api, content);
    dev.event(Payload::StateChange(proto::StateChange {
        path: path.into(),
        op: Op::Modify as i32,
        after_hash: hash.to_vec(),
        mode: 0o644,
        size: content.len() as u64,
        kind: FileKind::File as i32,
        ..Default::default()
    }))
}

/// A checkpoint of `files` (path → content), its manifest uploaded.
fn checkpoint(api: &Api, dev: &mut SimDevice, files: &Files) -> proto::SignedEvent {
    let manifest = proto::Manifest {
        entries: files
            .iter()
            .map(|(path, content)| proto::ManifestEntry {
                path: path.clone(),
                kind: FileKind::File as i32,
                mode: 0o644,
                size: content.len() as u64,
                hash: upload_blob(api, content).to_vec(),
                withheld: false,
            })
            .collect(),
    };
    let bytes = prost::Message::encode_to_vec(&manifest);
    let hash = upload_blob(api, &bytes);
    dev.event(Payload::Checkpoint(proto::Checkpoint {
        manifest_blob: hash.to_vec(),
        files: files.len() as u64,
        total_bytes: files.values().map(|c| c.len() as u64).sum(),
    }))
}

type Files = BTreeMap<String, Vec<u8>>;

fn files(entries: &[(&str, &str)]) -> Files {
    entries
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
        .collect()
}

fn event_id(e: &proto::SignedEvent) -> EventId {
    let body = decode_event(&e.body, &e.hash).expect("decodes");
    EventId::from_slice(&body.event_id).expect("event id")
}

fn restore(api: &Api, project: ProjectId, at: &str) -> (u64, Files) {
    let r = api.get(&format!("/v1/projects/{project}/restore?at={at}"));
    assert_eq!(r.status, 200, "restore at {at}: {}", r.body);
    let version = r
        .headers
        .get("x-horde-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("x-horde-version");
    (version, tar_entries(&r.bytes))
}

fn version_of(r: &proto::SyncAck) -> u64 {
    u64::from_be_bytes(r.versionstamps[0][..8].try_into().expect("8 bytes"))
}

#[test]
fn restore_at_an_event_is_that_devices_own_tree() {
    let cloud = Cloud::start();
    let t = cloud.tenant("views");
    let (project, main) = t.project("web");
    let api = &t.api;
    let mut a = SimDevice::new(project, main);
    let mut b = SimDevice::new(project, main);
    for d in [&a, &b] {
        assert_eq!(d.register(api).status, 201);
    }
    let sync = |dev: &SimDevice, events: Vec<proto::SignedEvent>| {
        ack(&api.sync(dev.project, dev.encoded(events)))
    };

    // A and B both start from nothing and work at once, on their own and on shared paths.
    let a1 = vec![
        put(api, &mut a, "a.txt", "a1"),
        put(api, &mut a, "shared.txt", "A1"),
    ];
    sync(&a, a1.clone());
    let b1 = vec![
        put(api, &mut b, "b.txt", "b1"),
        put(api, &mut b, "shared.txt", "B1"),
    ];
    sync(&b, b1.clone());
    let a2 = vec![
        put(api, &mut a, "a.txt", "a2"),
        put(api, &mut a, "a2.txt", "x"),
        a.event(delete_file("a2.txt")),
    ];
    let v_a2 = version_of(&sync(&a, a2.clone()));
    let b2 = vec![
        put(api, &mut b, "shared.txt", "B2"),
        b.event(delete_file("b.txt")),
    ];
    sync(&b, b2.clone());

    // At A's events: A's tree, event by event (not the whole commit), none of B's changes.
    let (v, tree) = restore(api, project, &event_id(&a2[0]).to_string());
    assert_eq!(v, v_a2, "the event's commit version");
    assert_eq!(tree, files(&[("a.txt", "a2"), ("shared.txt", "A1")]));
    let (_, tree) = restore(api, project, &event_id(&a2[1]).to_string());
    assert_eq!(
        tree,
        files(&[("a.txt", "a2"), ("a2.txt", "x"), ("shared.txt", "A1")])
    );
    let (_, tree) = restore(api, project, &event_id(&a2[2]).to_string());
    assert_eq!(tree, files(&[("a.txt", "a2"), ("shared.txt", "A1")]));
    // At B's: B's tree.
    let (_, tree) = restore(api, project, &event_id(&b1[1]).to_string());
    assert_eq!(tree, files(&[("b.txt", "b1"), ("shared.txt", "B1")]));
    let (_, tree) = restore(api, project, &event_id(&b2[1]).to_string());
    assert_eq!(tree, files(&[("shared.txt", "B2")]));
    // At a version: the canonical tree, each path's latest version (B's shared.txt).
    let (_, tree) = restore(api, project, &v_a2.to_string());
    assert_eq!(
        tree,
        files(&[("a.txt", "a2"), ("b.txt", "b1"), ("shared.txt", "B1")])
    );

    // A writes a checkpoint of its tree (plus a file it never recorded a change for, so
    // that only the manifest can bring it), then goes on; B keeps writing.
    let mut a_tree = files(&[
        ("a.txt", "a2"),
        ("shared.txt", "A1"),
        ("restored.txt", "from the manifest"),
    ]);
    let cp = checkpoint(api, &mut a, &a_tree);
    let a3 = vec![cp.clone(), put(api, &mut a, "shared.txt", "A3")];
    sync(&a, a3.clone());
    let b3 = vec![put(api, &mut b, "a.txt", "B's a")];
    sync(&b, b3);
    let a4 = vec![put(api, &mut a, "a4.txt", "a4")];
    sync(&a, a4.clone());

    let (_, tree) = restore(api, project, &event_id(&cp).to_string());
    assert_eq!(tree, a_tree, "at the checkpoint: its manifest");
    a_tree.insert("shared.txt".into(), b"A3".to_vec());
    let (_, tree) = restore(api, project, &event_id(&a3[1]).to_string());
    assert_eq!(tree, a_tree);
    a_tree.insert("a4.txt".into(), b"a4".to_vec());
    let (_, tree) = restore(api, project, &event_id(&a4[0]).to_string());
    assert_eq!(tree, a_tree, "the checkpoint, then A's changes only");
    // Before the checkpoint nothing of it shows.
    let (_, tree) = restore(api, project, &event_id(&a2[2]).to_string());
    assert_eq!(tree, files(&[("a.txt", "a2"), ("shared.txt", "A1")]));

    // A fork: a device without a checkpoint there starts from the parent's canonical tree
    // at the fork version; one with a checkpoint from its manifest.
    let fork = api.post(
        &format!("/v1/projects/{project}/timelines"),
        &json!({ "at": v_a2 }),
    );
    assert_eq!(fork.status, 201, "{}", fork.body);
    let fork: TimelineId = fork.json["id"].as_str().expect("id").parse().expect("uuid");
    let mut c = SimDevice::new(project, fork);
    assert_eq!(c.register(api).status, 201);
    let c1 = vec![put(api, &mut c, "c.txt", "c1")];
    sync(&c, c1.clone());
    b.timeline = fork;
    let b_fork = vec![put(api, &mut b, "shared.txt", "on the fork")];
    sync(&b, b_fork);
    let (_, tree) = restore(api, project, &event_id(&c1[0]).to_string());
    assert_eq!(
        tree,
        files(&[
            ("a.txt", "a2"),
            ("b.txt", "b1"),
            ("c.txt", "c1"),
            ("shared.txt", "B1")
        ]),
        "main at the fork version, then C's own change"
    );
    let c_tree = files(&[("only.txt", "C's checkpoint")]);
    let c2 = vec![checkpoint(api, &mut c, &c_tree), c.event(tool_call(1))];
    sync(&c, c2.clone());
    let (_, tree) = restore(api, project, &event_id(&c2[1]).to_string());
    assert_eq!(tree, c_tree);

    // Another tenant cannot name these events.
    let other = cloud.tenant("other");
    let r = other.api.get(&format!(
        "/v1/projects/{project}/restore?at={}",
        event_id(&a4[0])
    ));
    assert_eq!(r.status, 404, "{}", r.body);
    // A checkpoint whose manifest blob is missing: a JSON error before any byte of tar.
    let missing = BlobHash::of(b"never uploaded");
    let bad_cp = a.event(Payload::Checkpoint(proto::Checkpoint {
        manifest_blob: missing.to_vec(),
        files: 0,
        total_bytes: 0,
    }));
    sync(&a, vec![bad_cp.clone()]);
    let r = api.get(&format!(
        "/v1/projects/{project}/restore?at={}",
        event_id(&bad_cp)
    ));
    assert_eq!((r.status, r.code()), (409, "unrestorable"), "{}", r.body);
    let message = r.json["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(&missing.to_string()), "{message}");
}
