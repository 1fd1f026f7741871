//! Id newtypes. Every id is a UUID; new ones are v7 (time-ordered), so ids sort by creation.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
#[error("invalid {kind} id {input:?}: expected a UUID like 0190a8f2-6b1c-7d3e-9f00-1a2b3c4d5e6f")]
pub struct IdParseError {
    pub kind: &'static str,
    pub input: String,
}

macro_rules! id_type {
    ($name:ident, $kind:literal) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered (v7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }

            /// Reads the 16-byte form found in events; `None` when the length is wrong.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; 16]>::try_from(bytes).ok().map(Self::from_bytes)
            }

            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            pub fn to_vec(&self) -> Vec<u8> {
                self.0.as_bytes().to_vec()
            }

            pub const fn uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s.trim())
                    .map(Self)
                    .map_err(|_| IdParseError {
                        kind: $kind,
                        input: s.to_owned(),
                    })
            }
        }
    };
}

id_type!(TenantId, "tenant");
id_type!(ProjectId, "project");
id_type!(TimelineId, "timeline");
id_type!(DeviceId, "device");
id_type!(EventId, "event");
id_type!(TaskId, "task");
id_type!(UserId, "user");
id_type!(ApiKeyId, "API key");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip() {
        let a = EventId::new();
        let b = EventId::new();
        assert!(a < b, "v7 ids created later sort later");
        assert_eq!(a.to_string().parse::<EventId>().expect("round trip"), a);
        assert_eq!(EventId::from_slice(&a.to_vec()), Some(a));
        assert_eq!(EventId::from_slice(&[1, 2, 3]), None);
    }

    #[test]
    fn parse_error_names_input_and_kind() {
        let err = "nope".parse::<ProjectId>().expect_err("not a uuid");
        let msg = err.to_string();
        assert!(msg.contains("project") && msg.contains("\"nope\""), "{msg}");
    }
}
