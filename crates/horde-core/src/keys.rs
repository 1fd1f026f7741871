//! Device keys (ed25519) and signed chain heads.
//!
//! The key file lives in the user's config directory with mode 0600 and holds the device id
//! and the secret key. A chain head signature covers
//! `"horde.chain-head.v1" || project_id || device_id || seq (u64 BE) || hash`, never a
//! protobuf encoding, so it does not depend on an encoder.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::hash::EventHash;
use crate::ids::{DeviceId, ProjectId};
use crate::proto::ChainHead;

const HEAD_DOMAIN: &[u8] = b"horde.chain-head.v1";
const KEY_FILE_HEADER: &str = "# horde device key: private, never share or commit this file";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read device key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create device key {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device key {path} is malformed: {why}")]
    Malformed { path: PathBuf, why: String },
    #[error("device key {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("public key is not a valid ed25519 key")]
    BadPublicKey,
    #[error("signature is malformed or does not verify")]
    BadSignature,
}

pub struct DeviceKey {
    device: DeviceId,
    signing: SigningKey,
}

impl DeviceKey {
    /// A new device with a fresh key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self {
            device: DeviceId::new(),
            signing: SigningKey::from_bytes(&secret),
        })
    }

    /// Loads the key at `path`, creating it (and its directory, mode 0700) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        match fs::metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::generate()?.write_new(path),
            Err(source) => Err(KeyError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let read_err = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        let mode = fs::metadata(path).map_err(read_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(read_err)?;
        let malformed = |why: &str| KeyError::Malformed {
            path: path.to_owned(),
            why: why.to_owned(),
        };
        let mut device = None;
        let mut secret = None;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| malformed("expected key = value lines"))?;
            let v = v.trim().trim_matches('"');
            match k.trim() {
                "device_id" => {
                    device = Some(
                        v.parse::<DeviceId>()
                            .map_err(|e| malformed(&e.to_string()))?,
                    )
                }
                "secret_key" => {
                    let mut b = [0u8; 32];
                    hex::decode_to_slice(v, &mut b)
                        .map_err(|_| malformed("secret_key must be 64 hex digits"))?;
                    secret = Some(b);
                }
                _ => {}
            }
        }
        Ok(Self {
            device: device.ok_or_else(|| malformed("device_id is missing"))?,
            signing: SigningKey::from_bytes(
                &secret.ok_or_else(|| malformed("secret_key is missing"))?,
            ),
        })
    }

    /// Writes the key to a private temp file, then hard-links it into place: the link fails if
    /// another process created the key first, and nobody ever sees a half-written key.
    /// Returns the key that is on disk afterwards.
    fn write_new(self, path: &Path) -> Result<Self, KeyError> {
        let create_err = |source| KeyError::Create {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(create_err)?;
        let text = format!(
            "{KEY_FILE_HEADER}\ndevice_id = \"{}\"\nsecret_key = \"{}\"\n",
            self.device,
            hex::encode(self.signing.to_bytes())
        );
        let tmp = dir.join(format!(".device.key.{}.tmp", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(create_err)?;
        f.write_all(text.as_bytes()).map_err(create_err)?;
        f.sync_all().map_err(create_err)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(self),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(create_err(e)),
        }
    }

    pub fn device_id(&self) -> DeviceId {
        self.device
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Signs the chain head (`seq`, `hash`) of this device in `project`.
    pub fn sign_head(
        &self,
        project: ProjectId,
        seq: u64,
        hash: EventHash,
        signed_at: i64,
    ) -> ChainHead {
        let msg = head_message(
            &project.to_vec(),
            &self.device.to_vec(),
            seq,
            hash.as_bytes(),
        );
        ChainHead {
            project_id: project.to_vec(),
            device_id: self.device.to_vec(),
            seq,
            hash: hash.to_vec(),
            signed_at,
            public_key: self.public_key().to_vec(),
            signature: self.signing.sign(&msg).to_bytes().to_vec(),
        }
    }
}

fn head_message(project: &[u8], device: &[u8], seq: u64, hash: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_DOMAIN.len() + 16 + 16 + 8 + 32);
    m.extend_from_slice(HEAD_DOMAIN);
    m.extend_from_slice(project);
    m.extend_from_slice(device);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// Whether `key` is an ed25519 public key (a point on the curve) that signatures can be
/// checked against.
pub fn public_key_is_valid(key: &[u8; 32]) -> bool {
    VerifyingKey::from_bytes(key).is_ok()
}

/// Checks a head's signature with the public key it carries. Whether that key is the right
/// one for the device is the caller's question (see `chain::check_heads`).
pub fn verify_head(head: &ChainHead) -> Result<(), KeyError> {
    let pk: [u8; 32] = head
        .public_key
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::BadPublicKey)?;
    let key = VerifyingKey::from_bytes(&pk).map_err(|_| KeyError::BadPublicKey)?;
    let sig = Signature::from_slice(&head.signature).map_err(|_| KeyError::BadSignature)?;
    let msg = head_message(&head.project_id, &head.device_id, head.seq, &head.hash);
    key.verify(&msg, &sig).map_err(|_| KeyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("horde/device.key");
        let a = DeviceKey::load_or_create(&path).expect("create");
        let mode = fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = DeviceKey::load_or_create(&path).expect("load");
        assert_eq!(a.device_id(), b.device_id());
        assert_eq!(a.public_key(), b.public_key());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            DeviceKey::load(&path),
            Err(KeyError::TooOpen { .. })
        ));
    }

    #[test]
    fn heads_verify_and_tampering_fails() {
        let key = DeviceKey::generate().expect("key");
        let head = key.sign_head(ProjectId::new(), 7, EventHash::of(b"x"), 1);
        verify_head(&head).expect("valid");
        for mutate in [
            |h: &mut ChainHead| h.seq += 1,
            |h: &mut ChainHead| h.hash[0] ^= 1,
            |h: &mut ChainHead| h.signature[5] ^= 1,
            |h: &mut ChainHead| h.device_id[0] ^= 1,
        ] {
            let mut bad = head.clone();
            mutate(&mut bad);
            assert!(verify_head(&bad).is_err());
        }
    }
}
