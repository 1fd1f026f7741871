//! Prost types generated from `proto/horde/v1/*.proto`: the one definition of every event and
//! wire message. Nothing here is hand-written; change the `.proto` files instead.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/horde.v1.rs"));
}

pub use prost::Message;
