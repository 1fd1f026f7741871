//! Stored records. Metadata is JSON (small, rarely read, easy to evolve); per-path file
//! versions are tuples (many, read in bulk).

use horde_core::{ApiKeyId, DeviceId, ProjectId, TenantId, TimelineId, UserId};
use horde_kv::tuple::{Versionstamp, pack, unpack};
use serde::{Deserialize, Serialize};

use crate::error::{LedgerError, corrupt};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// The short integer every key of this tenant starts with: `("t", prefix, …)`.
    pub prefix: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
    Viewer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub created_at: i64,
}

/// An API key as stored: never the secret, only who it acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant: TenantId,
    pub user: UserId,
    pub role: Role,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub main_timeline: TimelineId,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
    pub name: String,
    pub registered_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub id: TimelineId,
    /// `None` for a project's main timeline.
    pub parent: Option<TimelineId>,
    /// The parent's version this timeline forked at (its history up to there is shared).
    pub fork_version: Option<u64>,
    pub created_at: i64,
}

/// One version of one path, as recorded by a `StateChange`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVersion {
    /// Where this version is in the log.
    pub versionstamp: Versionstamp,
    /// `false`: the path was deleted (or renamed away) at this version.
    pub exists: bool,
    /// Blob hash of the content (empty for directories and deletions).
    pub hash: Vec<u8>,
    pub mode: u32,
    pub size: u64,
    /// `horde.v1.FileKind` as a number.
    pub kind: i32,
    /// The blob stays on the device that recorded it (`StateChange.withheld`): it is not in
    /// the blob store, and a restore lists the path instead of writing it.
    pub withheld: bool,
}

impl FileVersion {
    /// `(exists, hash, mode, size, kind, withheld)`; versions written before the withheld bit
    /// existed are the first five and decode as not withheld.
    pub(crate) fn encode(&self) -> Vec<u8> {
        pack(&(
            self.exists,
            self.hash.as_slice(),
            i64::from(self.mode),
            self.size as i64,
            i64::from(self.kind),
            self.withheld,
        ))
    }

    pub(crate) fn decode(versionstamp: Versionstamp, bytes: &[u8]) -> Result<Self, LedgerError> {
        type V6 = (bool, Vec<u8>, i64, i64, i64, bool);
        type V5 = (bool, Vec<u8>, i64, i64, i64);
        let (exists, hash, mode, size, kind, withheld) = match unpack::<V6>(bytes) {
            Ok(v) => v,
            Err(e6) => {
                let (exists, hash, mode, size, kind): V5 =
                    unpack(bytes).map_err(|e| corrupt(format!("file version: {e6:?} / {e:?}")))?;
                (exists, hash, mode, size, kind, false)
            }
        };
        Ok(FileVersion {
            versionstamp,
            exists,
            hash,
            mode: u32::try_from(mode).map_err(|_| corrupt("file mode"))?,
            size: u64::try_from(size).map_err(|_| corrupt("file size"))?,
            kind: i32::try_from(kind).map_err(|_| corrupt("file kind"))?,
            withheld,
        })
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(
    what: &str,
    bytes: &[u8],
) -> Result<T, LedgerError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(format!("{what}: {e}")))
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_versions_round_trip_and_old_encodings_decode_as_not_withheld() {
        let vs = Versionstamp::complete([1; 10], 3);
        for withheld in [false, true] {
            let v = FileVersion {
                versionstamp: vs.clone(),
                exists: true,
                hash: vec![7; 32],
                mode: 0o600,
                size: 12,
                kind: 1,
                withheld,
            };
            assert_eq!(
                FileVersion::decode(vs.clone(), &v.encode()).expect("decodes"),
                v
            );
        }
        let old = pack(&(true, &[7u8; 32][..], 0o644i64, 5i64, 1i64));
        let v = FileVersion::decode(vs.clone(), &old).expect("the five-field form decodes");
        assert!(!v.withheld && v.exists && v.size == 5);
        assert!(FileVersion::decode(vs, &pack(&(true, 1i64))).is_err());
    }
}
