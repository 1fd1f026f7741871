//! `horde-proxy`: a TCP fault-injection proxy for end-to-end tests of the edge→cloud sync
//! protocol (HTTP/1.1 over TCP).
//!
//! Each accepted connection gets a [`Plan`] from [`Faults::plan`]: refused at once, cut after a
//! number of bytes in one direction (both sockets reset, so the peers see a reset rather than a
//! clean end of stream), or passed through. Plans depend only on the seed and the connection
//! number, so a seed replays the same faults. [`FaultSwitch`] turns refusals and cuts off (and
//! on again) for connections accepted afterwards, so a test can end with a clean pass.
//!
//! `plan.rs` decides, `proxy.rs` forwards. The binary (`main.rs`) is a thin CLI over both.

mod plan;
mod proxy;

pub use plan::{Cut, CutDirection, Direction, Faults, ParseError, Plan, Probability, Span};
pub use proxy::{CHUNK, Event, FaultSwitch, MAX_CONNECTIONS, Proxy, Sink};
