//! The writer thread from the library's side: pipelined large batches, a failing request in
//! a group that rolls back alone, and signed heads at the interval.

use horde::store::writer::AppendRequest;
use horde::store::{Layout, Ledger, Store};
use horde_core::proto::{Observation, event_body::Payload};
use horde_core::{DeviceKey, Draft, MAX_EVENT_BYTES};

fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = Store::init(tmp.path(), DeviceKey::generate().expect("key")).expect("init");
    (tmp, s)
}

fn drafts(s: &Store, n: usize, summary_len: usize) -> Vec<Draft> {
    (0..n)
        .map(|i| {
            Draft::new(
                s.ledger.meta.timeline,
                "t",
                Payload::Observation(Observation {
                    kind: "stdout".into(),
                    summary: format!("{i}:{}", "x".repeat(summary_len)),
                    ..Default::default()
                }),
            )
        })
        .collect()
}

fn verify(tmp: &tempfile::TempDir, s: &Store) -> horde::verify::Report {
    let ledger = Ledger::open(Layout::new(tmp.path())).expect("open");
    horde::verify::verify(&ledger, Some((s.device, s.public_key))).expect("verify runs")
}

#[test]
fn large_pipelined_batches_chain_and_sign_heads() {
    let (tmp, s) = store();
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let r = s
            .writer
            .append(AppendRequest {
                drafts: drafts(&s, 2500, 200),
                ..Default::default()
            })
            .expect("append");
        seqs.extend(r.appended.iter().map(|a| a.seq));
    }
    assert_eq!(seqs, (1..=7500).collect::<Vec<u64>>());
    let report = verify(&tmp, &s);
    assert!(report.ok, "{report:?}");
    assert_eq!(report.devices[0].heads, 7, "a head at 1000, 2000, … 7000");
    assert_eq!(report.devices[0].last_signed_seq, Some(7000));
}

#[test]
fn a_failing_request_rolls_back_alone() {
    let (tmp, s) = store();
    // Submit without waiting so the writer is likely to take them as one group.
    let a = s.writer.submit(AppendRequest {
        drafts: drafts(&s, 100, 10),
        ..Default::default()
    });
    let mut bad = drafts(&s, 100, 10);
    bad[50] = drafts(&s, 1, MAX_EVENT_BYTES)[0].clone();
    let b = s.writer.submit(AppendRequest {
        drafts: bad,
        sign_head: true,
        ..Default::default()
    });
    let c = s.writer.submit(AppendRequest {
        drafts: drafts(&s, 100, 10),
        sign_head: true,
        ..Default::default()
    });
    let a = a.wait().expect("a commits");
    let err = b.wait().expect_err("b has an oversize event");
    assert!(err.to_string().contains("limit"), "{err}");
    let c = c.wait().expect("c commits");
    assert_eq!(a.appended.last().map(|x| x.seq), Some(100));
    assert_eq!(
        c.appended.first().map(|x| x.seq),
        Some(101),
        "b left no trace in the chain"
    );
    assert_eq!(c.appended.last().map(|x| x.seq), Some(200));
    let report = verify(&tmp, &s);
    assert!(report.ok, "{report:?}");
    assert_eq!(report.devices[0].events, 200);
}

#[test]
fn async_callers_can_await_appends() {
    let (_tmp, s) = store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let r = rt.block_on(async {
        s.writer
            .submit(AppendRequest {
                drafts: drafts(&s, 3, 10),
                ..Default::default()
            })
            .rx
            .await
    });
    assert_eq!(r.expect("sent").expect("committed").appended.len(), 3);
}

/// (hash, boot) of each journal row.
fn journal(tmp: &tempfile::TempDir) -> Vec<(Vec<u8>, String)> {
    let conn = rusqlite::Connection::open(tmp.path().join(".horde/horde.db")).expect("db");
    conn.prepare("SELECT hash, boot FROM blob_journal ORDER BY hash")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

#[test]
fn small_blobs_are_made_durable_by_the_commit_that_names_them_and_rewritten_after_a_crash() {
    if horde::store::blobs::boot_id().is_none() {
        eprintln!("skipped: no boot id here, so nothing is journaled");
        return;
    }
    let (tmp, s) = store();
    let small = s
        .ledger
        .blobs
        .put_bytes(b"a tool's small output")
        .expect("put");
    let large_data = vec![7u8; horde::store::blobs::JOURNAL_BLOB_MAX + 1];
    let large = s.ledger.blobs.put_bytes(&large_data).expect("put");
    s.writer
        .append(AppendRequest {
            drafts: drafts(&s, 1, 10),
            blobs: vec![(small, 21), (large, large_data.len() as u64)],
            ..Default::default()
        })
        .expect("append");
    let rows = journal(&tmp);
    assert_eq!(rows.len(), 1, "only the small blob is journaled");
    assert_eq!(rows[0].0, small.as_bytes().to_vec());
    // A machine crash took the file back (rows of another boot, a file with nothing in it):
    // opening the ledger writes it again from its row, and drops the row.
    drop(s);
    let conn = rusqlite::Connection::open(tmp.path().join(".horde/horde.db")).expect("db");
    conn.execute("UPDATE blob_journal SET boot = 'a boot before'", [])
        .expect("update");
    drop(conn);
    let hex = small.to_hex();
    let path = tmp
        .path()
        .join(".horde/blobs")
        .join(&hex[..2])
        .join(&hex[2..]);
    std::fs::write(&path, b"").expect("truncate");
    let ledger = Ledger::open(Layout::new(tmp.path())).expect("open again");
    assert_eq!(
        ledger.blobs.get(&small).expect("restored"),
        b"a tool's small output"
    );
    assert!(journal(&tmp).is_empty(), "restored rows are dropped");
    drop(ledger);
    // Rows of this boot are dropped by a later commit once they are old, their files flushed.
    let s =
        Store::open(Layout::new(tmp.path()), DeviceKey::generate().expect("key")).expect("store");
    let again = s.ledger.blobs.put_bytes(b"another output").expect("put");
    s.writer
        .append(AppendRequest {
            drafts: drafts(&s, 1, 10),
            blobs: vec![(again, 14)],
            ..Default::default()
        })
        .expect("append");
    assert_eq!(journal(&tmp).len(), 1);
    let conn = rusqlite::Connection::open(tmp.path().join(".horde/horde.db")).expect("db");
    conn.execute("UPDATE blob_journal SET at = at - 3600000000", [])
        .expect("age");
    drop(conn);
    s.writer
        .append(AppendRequest {
            drafts: drafts(&s, 1, 10),
            ..Default::default()
        })
        .expect("append");
    assert!(journal(&tmp).is_empty(), "old rows are trimmed");
    assert_eq!(
        s.ledger.blobs.get(&again).expect("there"),
        b"another output"
    );
    let report = verify(&tmp, &s);
    assert!(
        report.missing_blobs.is_empty(),
        "{:?}",
        report.missing_blobs
    );
}
