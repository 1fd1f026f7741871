//! `horde-cloud` from the outside: the real binary on a free port, spoken to over HTTP.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use horde_core::proto;
use horde_e2e::{Cloud, SimDevice, ack, write_file};
use prost::Message;
use serde_json::json;

#[test]
fn signup_keys_roles_and_revocation() {
    let cloud = Cloud::start();
    let anon = cloud.api(None);
    // Bad signups change nothing.
    for body in [
        json!({ "tenant": "", "email": "a@b.c" }),
        json!({ "tenant": "x", "email": "not-an-email" }),
        json!({ "tenant": "x" }),
        json!({ "tenant": "x", "email": "a@b.c", "extra": 1 }),
    ] {
        let r = anon.post("/v1/signup", &body);
        assert!(
            r.status == 400 || r.status == 422,
            "{body}: {} {}",
            r.status,
            r.body
        );
        assert!(
            !r.json["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{}",
            r.body
        );
    }
    let r = anon.send(
        anon.request(reqwest::Method::POST, "/v1/signup")
            .header("content-type", "text/plain")
            .body("tenant=x"),
    );
    assert_eq!(r.status, 415, "{}", r.body);
    let r = anon.post(
        "/v1/signup",
        &json!({ "tenant": "acme", "email": "ceo@acme.example" }),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json["api_key"].as_str().expect("api_key").to_owned();
    assert!(key.starts_with("hk_"), "{key}");
    let again = anon.post(
        "/v1/signup",
        &json!({ "tenant": "acme", "email": "x@acme.example" }),
    );
    assert_eq!(
        (again.status, again.code()),
        (409, "exists"),
        "{}",
        again.body
    );

    // Every call but signup and health needs a key.
    let r = anon.get("/v1/projects");
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "{}", r.body);
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"horde\"");
    let r = cloud.api(Some("hk_0000")).get("/v1/projects");
    assert_eq!(r.status, 401);
    let admin = cloud.api(Some(&key));
    let me = admin.get("/v1/me");
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json["role"], "admin");
    assert_eq!(me.json["tenant"], "acme");

    // Projects: POST with a new id, PUT with the client's id (idempotent).
    let p = admin.post("/v1/projects", &json!({ "name": "web" }));
    assert_eq!(p.status, 201, "{}", p.body);
    let dup = admin.post("/v1/projects", &json!({ "name": "web" }));
    assert_eq!(dup.status, 409, "{}", dup.body);
    let id = horde_core::ProjectId::new();
    let put = admin.put(&format!("/v1/projects/{id}"), &json!({ "name": "edge" }));
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(put.json["id"], id.to_string());
    let put2 = admin.put(&format!("/v1/projects/{id}"), &json!({ "name": "edge" }));
    assert_eq!(put2.status, 200, "{}", put2.body);
    assert_eq!(put2.json["main_timeline"], put.json["main_timeline"]);
    let other_tl = horde_core::TimelineId::new().to_string();
    let put3 = admin.put(
        &format!("/v1/projects/{id}"),
        &json!({ "name": "edge", "main_timeline": other_tl }),
    );
    assert_eq!(
        (put3.status, put3.code()),
        (409, "main_timeline_differs"),
        "{}",
        put3.body
    );
    let list = admin.get("/v1/projects");
    assert_eq!(
        list.json["projects"].as_array().map(Vec::len),
        Some(2),
        "{}",
        list.body
    );

    // A viewer reads but never writes.
    let u = admin.post(
        "/v1/users",
        &json!({ "email": "v@acme.example", "role": "viewer" }),
    );
    assert_eq!(u.status, 201, "{}", u.body);
    let vk = admin.post(
        "/v1/keys",
        &json!({ "name": "ci", "user_id": u.json["id"] }),
    );
    assert_eq!(vk.status, 201, "{}", vk.body);
    assert_eq!(vk.json["role"], "viewer");
    let viewer = cloud.api(vk.json["api_key"].as_str());
    assert_eq!(viewer.get("/v1/projects").status, 200);
    for r in [
        viewer.post("/v1/projects", &json!({ "name": "nope" })),
        viewer.put(&format!("/v1/projects/{}", horde_core::ProjectId::new()), &json!({ "name": "nope" })),
        viewer.post("/v1/devices", &json!({ "id": horde_core::DeviceId::new().to_string(), "public_key": "00".repeat(32), "name": "x" })),
        viewer.sync(id, vec![1, 2, 3]),
        viewer.put_bytes(&format!("/v1/blobs/{}", horde_core::BlobHash::of(b"x")), b"x".to_vec()),
        viewer.post("/v1/keys", &json!({ "name": "more" })),
        viewer.post("/v1/users", &json!({ "email": "z@acme.example", "role": "admin" })),
    ] {
        assert_eq!(r.status, 403, "{}", r.body);
    }
    // A member cannot mint an admin key.
    let m = admin.post(
        "/v1/users",
        &json!({ "email": "m@acme.example", "role": "member" }),
    );
    let mk = admin.post("/v1/keys", &json!({ "name": "m", "user_id": m.json["id"] }));
    let member = cloud.api(mk.json["api_key"].as_str());
    let r = member.post("/v1/keys", &json!({ "name": "up", "role": "admin" }));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = member.post(
        "/v1/keys",
        &json!({ "name": "theirs", "user_id": u.json["id"] }),
    );
    assert_eq!(
        r.status, 403,
        "a member cannot mint keys for others: {}",
        r.body
    );
    let r = member.post("/v1/keys", &json!({ "name": "own" }));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        member.get("/v1/keys").json["keys"].as_array().map(Vec::len),
        Some(2)
    );

    // Revocation takes effect on the next request.
    let keys = admin.get("/v1/keys");
    assert_eq!(
        keys.json["keys"].as_array().map(Vec::len),
        Some(4),
        "{}",
        keys.body
    );
    assert!(
        !keys.body.contains("hk_"),
        "listings never show secrets: {}",
        keys.body
    );
    let del = admin.delete(&format!("/v1/keys/{}", vk.json["id"].as_str().expect("id")));
    assert_eq!(del.status, 204, "{}", del.body);
    let r = viewer.get("/v1/projects");
    assert_eq!(r.status, 401, "{}", r.body);
}

#[test]
fn ingest_is_exactly_once_and_checks_everything() {
    let cloud = Cloud::start();
    let t = cloud.tenant("ingest");
    let (project, timeline) = t.project("web");
    let mut dev = SimDevice::new(project, timeline);

    // Unknown device: 403, nothing stored.
    let first = dev.tools(100);
    let r = t.api.sync(project, dev.encoded(first.clone()));
    assert_eq!((r.status, r.code()), (403, "unknown_device"), "{}", r.body);
    assert_eq!(dev.register(&t.api).status, 201);
    assert_eq!(
        dev.register(&t.api).status,
        200,
        "registering again is a no-op"
    );

    let a = ack(&t.api.sync(project, dev.encoded(first.clone())));
    assert_eq!(
        (a.acked_seq, a.versionstamps.len(), a.skipped),
        (100, 100, 0)
    );
    assert!(a.versionstamps.iter().all(|v| v.len() == 12));
    assert!(
        a.versionstamps.windows(2).all(|w| w[0] < w[1]),
        "increasing"
    );
    // A replay stores nothing new.
    let again = ack(&t.api.sync(project, dev.encoded(first.clone())));
    assert_eq!(
        (again.acked_seq, again.versionstamps.len(), again.skipped),
        (100, 0, 100)
    );
    // ... and says where the skipped events are (a device whose ack was lost marks them).
    assert_eq!(again.skipped_versionstamps, a.versionstamps);

    // A gap names the expected seq.
    let _lost = dev.tools(5);
    let later = dev.tools(5);
    let r = t.api.sync(project, dev.encoded(later));
    assert_eq!((r.status, r.code()), (409, "seq_gap"), "{}", r.body);
    assert_eq!(r.json["error"]["expected_seq"], 101);
    assert_eq!(r.json["error"]["acked_seq"], 100);

    // Tampered event, bad signature, garbage, wrong type, oversize: 4xx, nothing stored.
    let mut dev2 = SimDevice::new(project, timeline);
    dev2.register(&t.api);
    let evs = dev2.tools(3);
    let mut tampered = evs.clone();
    tampered[1].body[10] ^= 1;
    let r = t.api.sync(project, dev2.encoded(tampered));
    assert_eq!((r.status, r.code()), (400, "bad_event"), "{}", r.body);
    let mut forged = dev2.batch(evs.clone());
    forged.head.as_mut().expect("head").signature[0] ^= 1;
    let r = t.api.sync(project, forged.encode_to_vec());
    assert_eq!((r.status, r.code()), (400, "bad_head"), "{}", r.body);
    let mut unsigned = dev2.batch(evs.clone());
    unsigned.head = None;
    let r = t.api.sync(project, unsigned.encode_to_vec());
    assert_eq!(r.status, 400, "{}", r.body);
    let r = t.api.sync(project, vec![0xff; 64]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("SyncBatch"),
        "{}",
        r.body
    );
    let full = dev2.encoded(evs.clone());
    let r = t.api.sync(project, full[..full.len() / 2].to_vec());
    assert_eq!(r.status, 400, "truncated: {}", r.body);
    let r = t.api.send(
        t.api
            .request(
                reqwest::Method::POST,
                &format!("/v1/projects/{project}/sync"),
            )
            .header("content-type", "application/json")
            .body(full.clone()),
    );
    assert_eq!(r.status, 415, "{}", r.body);
    let cursor = t.api.get(&format!(
        "/v1/projects/{project}/devices/{}/cursor",
        dev2.key.device_id()
    ));
    assert_eq!(cursor.json["acked_seq"], 0, "{}", cursor.body);

    // Limits: > 5,000 events, > 8 MiB, an event > 90 kB.
    let mut big = SimDevice::new(project, timeline);
    big.register(&t.api);
    let many = big.tools(5_001);
    let r = t.api.sync(project, big.encoded(many));
    assert_eq!((r.status, r.code()), (413, "too_large"), "{}", r.body);
    // Over 8 MiB: refused from the headers, before the body is read.
    let answer = raw_request(
        &cloud.url,
        &format!(
            "POST /v1/projects/{project}/sync HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
            t.api.key.as_deref().expect("key"),
            9 << 20
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let mut huge = dev2.batch(evs.clone());
    huge.events[0].body = vec![7u8; 95_000];
    let r = t.api.sync(project, huge.encode_to_vec());
    assert_eq!(r.status, 413, "{}", r.body);

    let ok = ack(&t.api.sync(project, full));
    assert_eq!(ok.acked_seq, 3);

    // Everything is there exactly once, paged with a cursor.
    let (events, pages) = t.api.all_events(project, 30);
    let mut seen = Vec::new();
    for e in &events {
        for field in [
            "id",
            "version",
            "seq",
            "device",
            "type",
            "occurred_at",
            "agent",
            "payload",
        ] {
            assert!(!e[field].is_null(), "{field} missing in {e}");
        }
        seen.push((
            e["device"].as_str().expect("device").to_owned(),
            e["seq"].as_u64().expect("seq"),
        ));
    }
    assert_eq!(seen.len(), 103, "{pages} pages");
    assert_eq!(pages, 4);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 103, "no duplicates");

    // One event by id; filters.
    let body = proto::EventBody::decode(first[41].body.as_slice()).expect("body");
    let eid = horde_core::EventId::from_slice(&body.event_id).expect("id");
    let one = t.api.get(&format!("/v1/projects/{project}/events/{eid}"));
    assert_eq!(
        (one.status, one.json["seq"].as_u64()),
        (200, Some(42)),
        "{}",
        one.body
    );
    let none = t.api.get(&format!(
        "/v1/projects/{project}/events/{}",
        horde_core::EventId::new()
    ));
    assert_eq!(none.status, 404);
    let by_device = t.api.get(&format!(
        "/v1/projects/{project}/events?device={}&limit=1000",
        dev2.key.device_id()
    ));
    assert_eq!(
        by_device.json["events"].as_array().map(Vec::len),
        Some(3),
        "{}",
        by_device.body
    );
    let bad = t
        .api
        .get(&format!("/v1/projects/{project}/events?type=nonsense"));
    assert_eq!(bad.status, 400, "{}", bad.body);
    let bad = t
        .api
        .get(&format!("/v1/projects/{project}/events?cursor=zz"));
    assert_eq!(bad.status, 400, "{}", bad.body);
    let bad = t.api.get(&format!("/v1/projects/{project}/events?limit=0"));
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[test]
fn history_manifest_and_filters_by_path() {
    let cloud = Cloud::start();
    let t = cloud.tenant("files");
    let (project, timeline) = t.project("web");
    let mut dev = SimDevice::new(project, timeline);
    dev.register(&t.api);
    let v1 = vec![
        dev.event(write_file("src/a.rs", b"one")),
        dev.event(write_file("b.txt", b"b")),
    ];
    let a1 = ack(&t.api.sync(project, dev.encoded(v1)));
    let version1 = version_of(&a1.versionstamps[1]);
    std::thread::sleep(Duration::from_millis(20));
    let v2 = vec![
        dev.event(write_file("src/a.rs", b"two")),
        dev.event(horde_e2e::delete_file("b.txt")),
        dev.event(horde_e2e::tool_call(1)),
    ];
    ack(&t.api.sync(project, dev.encoded(v2)));

    let h = t
        .api
        .get(&format!("/v1/projects/{project}/history?path=src/a.rs"));
    assert_eq!(h.status, 200, "{}", h.body);
    let versions = h.json["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(
        versions[1]["hash"],
        horde_core::BlobHash::of(b"two").to_hex()
    );
    let bad = t.api.get(&format!(
        "/v1/projects/{project}/history?path=../etc/passwd"
    ));
    assert_eq!(bad.status, 400, "{}", bad.body);

    let now = t.api.get(&format!("/v1/projects/{project}/manifest"));
    let paths: Vec<&str> = now.json["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["src/a.rs"], "{}", now.body);
    let then = t
        .api
        .get(&format!("/v1/projects/{project}/manifest?at={version1}"));
    let files = then.json["files"].as_array().expect("files");
    assert_eq!(files.len(), 2, "{}", then.body);
    assert_eq!(files[1]["hash"], horde_core::BlobHash::of(b"one").to_hex());
    let early = t.api.get(&format!(
        "/v1/projects/{project}/manifest?at=2001-01-01T00:00:00Z"
    ));
    assert_eq!(
        early.json["files"].as_array().map(Vec::len),
        Some(0),
        "{}",
        early.body
    );
    let future = t.api.get(&format!(
        "/v1/projects/{project}/manifest?at={}",
        u64::MAX / 2
    ));
    assert_eq!(future.status, 400, "{}", future.body);

    let changes = t
        .api
        .get(&format!("/v1/projects/{project}/events?path=b.txt"));
    assert_eq!(
        changes.json["events"].as_array().map(Vec::len),
        Some(2),
        "{}",
        changes.body
    );
    // Every payload type is a valid filter, and the types events show filter them.
    for kind in horde_core::PAYLOAD_KINDS {
        let r = t
            .api
            .get(&format!("/v1/projects/{project}/events?type={kind}"));
        assert_eq!(r.status, 200, "{kind}: {}", r.body);
        for e in r.json["events"].as_array().expect("events") {
            assert_eq!(e["type"], *kind);
        }
    }
    let tools = t.api.get(&format!(
        "/v1/projects/{project}/events?type=tool_call&agent=test-agent"
    ));
    assert_eq!(
        tools.json["events"].as_array().map(Vec::len),
        Some(1),
        "{}",
        tools.body
    );
    let nobody = t
        .api
        .get(&format!("/v1/projects/{project}/events?agent=someone-else"));
    assert_eq!(nobody.json["events"].as_array().map(Vec::len), Some(0));
}

/// Sends raw bytes and returns what the server answers (until it closes or 2 s pass).
fn raw_request(url: &str, head: &str) -> String {
    use std::io::Write;
    let addr = url.strip_prefix("http://").expect("http url");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn version_of(vs: &[u8]) -> u64 {
    u64::from_be_bytes(vs[..8].try_into().expect("8 bytes"))
}

#[test]
fn tenants_cannot_see_each_other() {
    let cloud = Cloud::start();
    let a = cloud.tenant("alpha");
    let b = cloud.tenant("beta");
    let (project, timeline) = a.project("secret");
    let mut dev = SimDevice::new(project, timeline);
    dev.register(&a.api);
    let evs = vec![dev.event(write_file("k.txt", b"k"))];
    let body = proto::EventBody::decode(evs[0].body.as_slice()).expect("body");
    let eid = horde_core::EventId::from_slice(&body.event_id).expect("id");
    ack(&a.api.sync(project, dev.encoded(evs.clone())));
    let blob = horde_core::BlobHash::of(b"alpha's secret");
    assert_eq!(
        a.api
            .put_bytes(&format!("/v1/blobs/{blob}"), b"alpha's secret".to_vec())
            .status,
        201
    );
    let device = dev.key.device_id();

    for path in [
        format!("/v1/projects/{project}"),
        format!("/v1/projects/{project}/events"),
        format!("/v1/projects/{project}/events/{eid}"),
        format!("/v1/projects/{project}/history?path=k.txt"),
        format!("/v1/projects/{project}/manifest"),
        format!("/v1/projects/{project}/timelines"),
        format!("/v1/projects/{project}/tail"),
        format!("/v1/projects/{project}/devices/{device}/cursor"),
        format!("/v1/devices/{device}"),
        format!("/v1/blobs/{blob}"),
    ] {
        let r = b.api.get(&path);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert_eq!(
            b.api.head(&path).status,
            if path.contains("/blobs/") {
                404
            } else {
                r.status
            }
        );
    }
    // Writing into another tenant's project: 404 too, and nothing changes.
    let mut intruder = SimDevice::new(project, timeline);
    intruder.register(&b.api);
    let evs = intruder.tools(2);
    let r = b.api.sync(project, intruder.encoded(evs));
    assert_eq!(r.status, 404, "{}", r.body);
    let r = b.api.put(
        &format!("/v1/projects/{project}"),
        &json!({ "name": "hijack" }),
    );
    // Projects live in their tenant's key space: PUT with a's project id creates b's own
    // project, and a's is untouched.
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        a.api.get(&format!("/v1/projects/{project}")).json["name"],
        "secret"
    );
    let keys = b.api.get("/v1/keys");
    let a_keys = a.api.get("/v1/keys");
    let a_key_id = a_keys.json["keys"][0]["id"].as_str().expect("key id");
    assert!(!keys.body.contains(a_key_id));
    assert_eq!(b.api.delete(&format!("/v1/keys/{a_key_id}")).status, 404);
    let r = b
        .api
        .post("/v1/keys", &json!({ "name": "x", "user_id": a.user_id }));
    assert_eq!(r.status, 404, "another tenant's user: {}", r.body);
    assert_eq!(a.api.get("/v1/me").status, 200, "a's key still works");
    let events = a.api.get(&format!("/v1/projects/{project}/events"));
    assert_eq!(
        events.json["events"].as_array().map(Vec::len),
        Some(1),
        "{}",
        events.body
    );
}

#[test]
fn blobs_are_verified_streamed_and_limited() {
    let cloud = Cloud::start_with(&["--max-blob-bytes", "1000000"], &[]);
    let t = cloud.tenant("blobs");
    let content: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let hash = horde_core::BlobHash::of(&content);
    let path = format!("/v1/blobs/{hash}");
    assert_eq!(t.api.head(&path).status, 404);
    let r = t.api.put_bytes(&path, content.clone());
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        t.api.put_bytes(&path, content.clone()).status,
        200,
        "idempotent"
    );
    let h = t.api.head(&path);
    assert_eq!(h.status, 200);
    assert_eq!(h.headers["content-length"], "600000");
    let g = t.api.get(&path);
    assert_eq!(g.status, 200);
    assert!(g.bytes == content, "round trip");

    let other = horde_core::BlobHash::of(b"something else");
    let r = t
        .api
        .put_bytes(&format!("/v1/blobs/{other}"), content.clone());
    assert_eq!((r.status, r.code()), (400, "hash_mismatch"), "{}", r.body);
    assert_eq!(
        t.api.head(&format!("/v1/blobs/{other}")).status,
        404,
        "nothing stored"
    );
    // Over the limit: refused from the headers, before the body is sent. (A body that
    // streams past the limit is cut off by the blob store: see horde-blob's conformance.)
    let answer = raw_request(
        &cloud.url,
        &format!(
            "PUT /v1/blobs/{} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 1000001\r\n\r\n",
            horde_core::BlobHash::of(b"big"),
            t.api.key.as_deref().expect("key"),
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let r = t.api.get("/v1/blobs/not-a-hash");
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn blobs_on_s3() {
    let Some(s3) = horde_blob::testing::S3sServer::start() else {
        return;
    };
    let cloud = Cloud::start_with(
        &[
            "--blobs",
            &format!("s3://{}/horde", s3.bucket),
            "--s3-path-style",
            "true",
        ],
        &[
            ("HORDE_S3_ENDPOINT", s3.endpoint.as_str()),
            ("HORDE_S3_REGION", "us-east-1"),
            ("HORDE_S3_ACCESS_KEY_ID", s3.access_key.as_str()),
            ("HORDE_S3_SECRET_ACCESS_KEY", s3.secret_key.as_str()),
        ],
    );
    assert_eq!(
        cloud.api(None).get("/readyz").status,
        200,
        "{}",
        cloud.log()
    );
    let t = cloud.tenant("s3");
    let content = vec![42u8; 100_000];
    let hash = horde_core::BlobHash::of(&content);
    let r = t
        .api
        .put_bytes(&format!("/v1/blobs/{hash}"), content.clone());
    assert_eq!(r.status, 201, "{}\n{}", r.body, cloud.log());
    assert!(t.api.get(&format!("/v1/blobs/{hash}")).bytes == content);
    let u = cloud.tenant("s3-other");
    assert_eq!(u.api.head(&format!("/v1/blobs/{hash}")).status, 404);
}

#[test]
fn live_tail_streams_new_events() {
    let cloud = Cloud::start();
    let t = cloud.tenant("tail");
    let (project, timeline) = t.project("web");
    let mut dev = SimDevice::new(project, timeline);
    dev.register(&t.api);
    let first = dev.tools(2);
    ack(&t.api.sync(project, dev.encoded(first)));
    let resp = t
        .api
        .request(
            reqwest::Method::GET,
            &format!("/v1/projects/{project}/tail"),
        )
        .send()
        .expect("tail");
    assert_eq!(resp.status(), 200);
    let mut lines = BufReader::new(resp).lines();
    let evs = dev.tools(3);
    ack(&t.api.sync(project, dev.encoded(evs)));
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let line = lines.next().expect("stream open").expect("line");
        if let Some(data) = line.strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(data).expect("event json");
            seqs.push(v["seq"].as_u64().expect("seq"));
        }
    }
    assert_eq!(seqs, [3, 4, 5], "only new events, in order");
}

#[test]
fn health_metrics_openapi_limits_and_shutdown() {
    let mut cloud = Cloud::start_with(&["--rate-limit", "1", "--rate-burst", "3"], &[]);
    let anon = cloud.api(None);
    assert_eq!(anon.get("/healthz").status, 200);
    assert_eq!(anon.get("/readyz").status, 200);
    let doc = anon.get("/v1/openapi.json");
    assert_eq!(doc.status, 200);
    assert!(
        doc.json["paths"]["/v1/projects/{id}/sync"]["post"].is_object(),
        "{}",
        doc.body
    );
    let nowhere = anon.get("/v1/nowhere");
    assert_eq!((nowhere.status, nowhere.code()), (404, "not_found"));
    let wrong = anon.send(anon.request(reqwest::Method::PATCH, "/v1/projects"));
    assert_eq!(wrong.status, 405, "{}", wrong.body);

    // Per-key rate limit: burst 3, then 429 with Retry-After.
    let t = cloud.tenant("limits");
    let codes: Vec<u16> = (0..6).map(|_| t.api.get("/v1/me").status).collect();
    assert!(codes.contains(&429), "{codes:?}");
    let limited = (0..5)
        .map(|_| t.api.get("/v1/me"))
        .find(|r| r.status == 429)
        .expect("429");
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(limited.code(), "rate_limited");

    // Huge headers are refused before any handler runs.
    let r = anon.send(
        anon.request(reqwest::Method::GET, "/healthz")
            .header("x-big", "a".repeat(200_000)),
    );
    assert!((400..500).contains(&r.status), "{}", r.status);

    let metrics = anon.get("/metrics");
    assert!(
        metrics.body.contains("horde_http_requests_total"),
        "{}",
        metrics.body
    );

    // SIGTERM: a clean exit even with a live tail open.
    let (project, _) = {
        std::thread::sleep(Duration::from_secs(4));
        t.project("web")
    };
    let mut tail = t
        .api
        .request(
            reqwest::Method::GET,
            &format!("/v1/projects/{project}/tail"),
        )
        .send()
        .expect("tail");
    let status = cloud.stop();
    assert!(status.success(), "{status:?}\n{}", cloud.log());
    let mut rest = String::new();
    let _ = tail.read_to_string(&mut rest);
    assert!(cloud.log().contains("shutting down"), "{}", cloud.log());
}

#[test]
fn bad_configuration_is_refused_clearly() {
    let out = std::process::Command::new(horde_e2e::binary("horde-cloud"))
        .args([
            "serve",
            "--store",
            "postgres://nope",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expected sqlite:PATH or fdb:CLUSTER_FILE"),
        "{err}"
    );
    let out = std::process::Command::new(horde_e2e::binary("horde-cloud"))
        .args([
            "serve",
            "--blobs",
            "ftp://x",
            "--listen",
            "127.0.0.1:0",
            "--store",
        ])
        .arg(format!(
            "sqlite:{}",
            tempfile::tempdir()
                .expect("dir")
                .path()
                .join("x.db")
                .display()
        ))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ftp://x"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SIGKILL the cloud right after acknowledgements and in the middle of batches: after a
/// restart on the same store, every acknowledged event is there exactly once, and resending
/// what was in flight stores the rest without duplicates.
#[test]
fn a_killed_cloud_loses_nothing_acknowledged() {
    let cloud = Cloud::start();
    let t = cloud.tenant("crash");
    let key = t.api.key.clone().expect("key");
    let (project, timeline) = t.project("web");
    let mut dev = SimDevice::new(project, timeline);
    dev.register(&t.api);
    let mut cloud = cloud;
    let mut acked = 0u64;
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for round in 0..6 {
        let batch = dev.tools(4_000);
        let body = dev.encoded(batch);
        sent.push(body.clone());
        let api = cloud.api(Some(&key));
        if round % 2 == 0 {
            // Killed after the ack.
            acked = ack(&api.sync(project, body)).acked_seq;
            cloud = restart(cloud);
        } else {
            // Killed while the batch is in flight: 4,000 events (~1.4 MB) are committed in
            // two transactions, so the kill may fall before, between or after them.
            let sender = std::thread::spawn(move || {
                api.request(
                    reqwest::Method::POST,
                    &format!("/v1/projects/{project}/sync"),
                )
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .map(|r| r.status())
            });
            std::thread::sleep(Duration::from_millis(5 + 7 * round));
            let dir = cloud.crash_into_dir();
            let _ = sender.join();
            cloud = Cloud::start_in(dir, &[], &[]);
        }
        let api = cloud.api(Some(&key));
        let cursor = api.get(&format!(
            "/v1/projects/{project}/devices/{}/cursor",
            dev.key.device_id()
        ));
        let held = cursor.json["acked_seq"].as_u64().expect("acked_seq");
        assert!(
            held >= acked,
            "round {round}: the cloud holds {held} < acknowledged {acked}"
        );
        // The device resends everything from the cloud's cursor on (here: all it sent).
        for body in &sent {
            let a = ack(&api.sync(project, body.clone()));
            acked = a.acked_seq;
        }
        assert_eq!(acked, 4_000 * (round + 1));
    }
    let api = cloud.api(Some(&key));
    let (events, _) = api.all_events(project, 1_000);
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs.len(), 24_000, "every event once");
    assert!(
        seqs.iter().copied().eq(1..=24_000),
        "in order, no duplicates"
    );
}

fn restart(cloud: Cloud) -> Cloud {
    let dir = cloud.crash_into_dir();
    Cloud::start_in(dir, &[], &[])
}
