//! The proxy in-process between real TCP clients and upstreams: byte-exact pass-through, cuts
//! in each direction at the planned byte, refusals, seeded determinism, the fault switch.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PATIENCE, echo_server, exchange, is_reset, pattern, sink_server, source_server};
use horde_proxy::{CutDirection, Direction, Event, FaultSwitch, Faults, Probability, Proxy, Span};

struct Running {
    addr: SocketAddr,
    events: Arc<Mutex<Vec<Event>>>,
    switch: FaultSwitch,
}

async fn start(upstream: SocketAddr, faults: Faults) -> Running {
    let proxy = Proxy::bind(
        "127.0.0.1:0".parse().expect("valid address"),
        &upstream.to_string(),
        faults,
    )
    .await
    .expect("binding the proxy");
    let addr = proxy.local_addr().expect("bound address");
    let switch = proxy.switch();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    tokio::spawn(proxy.run(Arc::new(move |event| {
        log.lock().expect("log lock").push(event);
    })));
    Running {
        addr,
        events,
        switch,
    }
}

impl Running {
    /// Waits for the line that ends connection `conn` and returns it.
    async fn ending(&self, conn: u64) -> String {
        let wait = async {
            loop {
                let found = self
                    .events
                    .lock()
                    .expect("log lock")
                    .iter()
                    .find(|event| match event {
                        Event::Refused { conn: c }
                        | Event::UpstreamFailed { conn: c, .. }
                        | Event::Cut { conn: c, .. }
                        | Event::Closed { conn: c, .. } => *c == conn,
                        _ => false,
                    })
                    .map(ToString::to_string);
                if let Some(line) = found {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("connection {conn} never ended"))
    }

    /// The cuts logged so far, in connection order.
    fn cuts(&self) -> Vec<(u64, Direction, u64)> {
        let mut cuts: Vec<_> = self
            .events
            .lock()
            .expect("log lock")
            .iter()
            .filter_map(|event| match event {
                Event::Cut {
                    conn,
                    direction,
                    after,
                } => Some((*conn, *direction, *after)),
                _ => None,
            })
            .collect();
        cuts.sort_by_key(|cut| cut.0);
        cuts
    }
}

fn cutting(direction: CutDirection, min: u64, max: u64, seed: u64) -> Faults {
    Faults {
        seed,
        cut_probability: Probability::ALWAYS,
        cut_after: Span::new(min, max).expect("valid range"),
        direction,
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn passes_several_megabytes_through_byte_for_byte() {
    let (upstream, _) = echo_server().await;
    let proxy = start(upstream, Faults::default()).await;
    let body = pattern(8 << 20, 1);
    let (echoed, result) = exchange(proxy.addr, &body).await;
    result.expect("a clean exchange");
    assert!(
        echoed == body,
        "{} bytes back of {}",
        echoed.len(),
        body.len()
    );
    assert_eq!(
        proxy.ending(1).await,
        format!("conn 1 closed (up {0} bytes, down {0} bytes)", body.len())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn passes_concurrent_connections_with_delays() {
    let (upstream, _) = echo_server().await;
    let faults = Faults {
        delay_ms: Span::new(0, 2).expect("valid range"),
        ..Faults::default()
    };
    let proxy = start(upstream, faults).await;
    let exchanges = (0..8u64).map(|i| {
        let addr = proxy.addr;
        tokio::spawn(async move {
            let body = pattern(512 << 10, i + 10);
            let (echoed, result) = exchange(addr, &body).await;
            result.expect("a clean exchange");
            assert!(echoed == body, "connection {i}: bytes differ");
        })
    });
    for exchange in exchanges.collect::<Vec<_>>() {
        exchange.await.expect("exchange task");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cuts_mid_request_after_the_planned_bytes() {
    let (upstream, mut received) = sink_server().await;
    let faults = cutting(CutDirection::Up, 1000, 2000, 5);
    let proxy = start(upstream, faults).await;
    let body = pattern(1 << 20, 2);
    for conn in 1..=5u64 {
        let (_, result) = exchange(proxy.addr, &body).await;
        assert!(is_reset(&result), "conn {conn}: client saw {result:?}");
        let planned = faults.plan(conn).cut.expect("always cut");
        assert_eq!(planned.direction, Direction::Up);
        assert_eq!(
            proxy.ending(conn).await,
            format!("conn {conn} cut after {} bytes up", planned.after)
        );
        let got = tokio::time::timeout(PATIENCE, received.recv())
            .await
            .expect("the upstream connection ends")
            .expect("the sink server runs");
        let n = got.bytes.len() as u64;
        assert!((1000..=2000).contains(&n), "upstream received {n} bytes");
        assert!(
            n <= planned.after,
            "{n} bytes arrived, {} forwarded",
            planned.after
        );
        assert!(
            got.bytes[..] == body[..got.bytes.len()],
            "a prefix of the body"
        );
        assert!(
            got.ended.is_err(),
            "the upstream sees a reset, not a clean end"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cuts_mid_response_after_the_planned_bytes() {
    let body = Arc::new(pattern(1 << 20, 3));
    let upstream = source_server(Arc::clone(&body)).await;
    let faults = cutting(CutDirection::Down, 1000, 2000, 6);
    let proxy = start(upstream, faults).await;
    for conn in 1..=5u64 {
        let (got, result) = exchange(proxy.addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(is_reset(&result), "conn {conn}: client saw {result:?}");
        let planned = faults.plan(conn).cut.expect("always cut");
        assert_eq!(planned.direction, Direction::Down);
        assert_eq!(
            proxy.ending(conn).await,
            format!("conn {conn} cut after {} bytes down", planned.after)
        );
        let n = got.len() as u64;
        assert!((1000..=2000).contains(&n), "client received {n} bytes");
        assert!(
            n <= planned.after,
            "{n} bytes arrived, {} forwarded",
            planned.after
        );
        assert!(got[..] == body[..got.len()], "a prefix of the response");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_seed_cuts_at_the_same_points() {
    let (upstream, _) = echo_server().await;
    let body = pattern(64 << 10, 4);
    let mut runs = Vec::new();
    for seed in [11, 11, 12] {
        let faults = cutting(CutDirection::Both, 0, 40_000, seed);
        let proxy = start(upstream, faults).await;
        for conn in 1..=12u64 {
            let (_, result) = exchange(proxy.addr, &body).await;
            assert!(is_reset(&result), "seed {seed} conn {conn}: {result:?}");
            proxy.ending(conn).await;
        }
        let cuts = proxy.cuts();
        let planned: Vec<_> = (1..=12u64)
            .map(|conn| {
                let cut = faults.plan(conn).cut.expect("always cut");
                (conn, cut.direction, cut.after)
            })
            .collect();
        assert_eq!(cuts, planned, "seed {seed}: the log follows the plan");
        runs.push(cuts);
    }
    assert_eq!(runs[0], runs[1], "same seed, same cuts");
    assert_ne!(runs[0], runs[2], "another seed, other cuts");
    let directions: Vec<_> = runs[0].iter().map(|cut| cut.1).collect();
    assert!(directions.contains(&Direction::Up) && directions.contains(&Direction::Down));
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_without_contacting_the_upstream() {
    let (upstream, accepted) = echo_server().await;
    let faults = Faults {
        refuse_probability: Probability::ALWAYS,
        ..Faults::default()
    };
    let proxy = start(upstream, faults).await;
    let (got, result) = exchange(proxy.addr, b"hello").await;
    assert!(got.is_empty());
    assert!(is_reset(&result), "client saw {result:?}");
    assert_eq!(proxy.ending(1).await, "conn 1 refused");

    proxy.switch.set(false);
    let (echoed, result) = exchange(proxy.addr, b"hello").await;
    result.expect("faults off: a clean exchange");
    assert_eq!(echoed, b"hello");
    proxy.ending(2).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "only the passed connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_switch_turns_cuts_off_and_on() {
    let (upstream, _) = echo_server().await;
    let faults = cutting(CutDirection::Both, 100, 200, 9);
    let proxy = start(upstream, faults).await;
    let body = pattern(256 << 10, 5);

    let (_, result) = exchange(proxy.addr, &body).await;
    assert!(is_reset(&result));
    assert!(proxy.ending(1).await.starts_with("conn 1 cut after"));

    assert!(!proxy.switch.toggle(), "now off");
    let (echoed, result) = exchange(proxy.addr, &body).await;
    result.expect("faults off: a clean exchange");
    assert!(echoed == body);
    assert!(proxy.ending(2).await.starts_with("conn 2 closed"));

    assert!(proxy.switch.toggle(), "on again");
    let (_, result) = exchange(proxy.addr, &body).await;
    assert!(is_reset(&result));
    let planned = faults.plan(3).cut.expect("always cut");
    assert_eq!(
        proxy.ending(3).await,
        format!(
            "conn 3 cut after {} bytes {}",
            planned.after, planned.direction
        ),
        "connection numbers and plans are not shifted by the switch"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_upstream_resets_the_client() {
    // Bound and dropped: nothing listens there any more.
    let upstream = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
        listener.local_addr().expect("bound address")
    };
    let proxy = start(upstream, Faults::default()).await;
    let (_, result) = exchange(proxy.addr, b"hello").await;
    assert!(is_reset(&result), "client saw {result:?}");
    assert!(
        proxy
            .ending(1)
            .await
            .starts_with("conn 1 upstream connect failed:")
    );
}
