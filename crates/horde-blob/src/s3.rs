//! The S3 backend: object `{prefix/}{ns}/{hex}` in one bucket.
//!
//! An upload of at most [`PART_SIZE`] bytes is buffered, verified, then sent with one
//! PutObject. A larger one becomes a multipart upload on the final key, sent part by part as
//! it is hashed; CompleteMultipartUpload is called only once the whole body hashed to its
//! name, and every failure (mismatch, too large, body error, S3 error) aborts it, so an
//! incomplete upload is never visible. A cancelled `put` (future dropped) aborts the upload
//! from a spawned task. Memory per upload: one part buffer.

use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio_util::io::ReaderStream;

use crate::{BlobError, BlobHash, ByteStream, Intake, PutOutcome, S3Config};

/// Uploads up to this size are one PutObject; larger ones go in parts of this size (S3's
/// minimum part is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// S3's limit on parts per upload: with 8 MiB parts, blobs up to 78 GiB.
const MAX_PARTS: usize = 10_000;
/// Region used when neither the configuration nor the SDK chain names one (S3-compatible
/// servers mostly ignore it, but SigV4 signs with it).
const FALLBACK_REGION: &str = "us-east-1";
/// Read size when streaming a blob out.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone)]
pub struct S3Blobs {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    bucket: String,
    /// Without a trailing '/'.
    prefix: Option<String>,
}

impl std::fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn backend(what: &str, key: &str, err: impl std::error::Error) -> BlobError {
    BlobError::Backend(format!("S3 {what} {key}: {}", DisplayErrorContext(err)))
}

fn status_of<E>(err: &aws_sdk_s3::error::SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

impl S3Blobs {
    pub(crate) async fn open(
        bucket: String,
        prefix: Option<String>,
        cfg: &S3Config,
    ) -> Result<Self, BlobError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &cfg.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    id.clone(),
                    secret.clone(),
                    None,
                    None,
                    "horde",
                ));
            }
            (None, None) => {}
            _ => {
                return Err(BlobError::BadLocation(
                    "S3 credentials need both an access key id and a secret access key".into(),
                ));
            }
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(cfg.path_style);
        if sdk.region().is_none() {
            tracing::info!(
                region = FALLBACK_REGION,
                "no S3 region configured; using the fallback"
            );
            conf = conf.region(Region::new(FALLBACK_REGION));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client: Client::from_conf(conf.build()),
                bucket,
                prefix,
            }),
        })
    }

    pub(crate) fn describe(&self) -> String {
        match &self.inner.prefix {
            Some(p) => format!("s3://{}/{p}", self.inner.bucket),
            None => format!("s3://{}", self.inner.bucket),
        }
    }

    fn key(&self, ns: &str, hash: &BlobHash) -> String {
        match &self.inner.prefix {
            Some(p) => format!("{p}/{ns}/{}", hash.to_hex()),
            None => format!("{ns}/{}", hash.to_hex()),
        }
    }

    pub(crate) async fn ready(&self) -> Result<(), BlobError> {
        self.inner
            .client
            .head_bucket()
            .bucket(&self.inner.bucket)
            .send()
            .await
            .map_err(|e| backend("HeadBucket", &self.describe(), e))?;
        Ok(())
    }

    pub(crate) async fn head(&self, ns: &str, hash: &BlobHash) -> Result<Option<u64>, BlobError> {
        self.head_key(&self.key(ns, hash)).await
    }

    async fn head_key(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let res = self
            .inner
            .client
            .head_object()
            .bucket(&self.inner.bucket)
            .key(key)
            .send()
            .await;
        match res {
            Ok(out) => {
                let len = out
                    .content_length()
                    .ok_or_else(|| BlobError::Backend(format!("S3 HeadObject {key}: no size")))?;
                Ok(Some(size_from(len, "HeadObject", key)?))
            }
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || status_of(&e) == Some(404) =>
            {
                Ok(None)
            }
            Err(e) => Err(backend("HeadObject", key, e)),
        }
    }

    pub(crate) async fn get(
        &self,
        ns: &str,
        hash: &BlobHash,
    ) -> Result<Option<(u64, ByteStream)>, BlobError> {
        let key = self.key(ns, hash);
        let res = self
            .inner
            .client
            .get_object()
            .bucket(&self.inner.bucket)
            .key(&key)
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || status_of(&e) == Some(404) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(backend("GetObject", &key, e)),
        };
        let len = out
            .content_length()
            .ok_or_else(|| BlobError::Backend(format!("S3 GetObject {key}: no size")))?;
        let size = size_from(len, "GetObject", &key)?;
        let reader = out.body.into_async_read();
        let stream: ByteStream = Box::pin(ReaderStream::with_capacity(reader, READ_CHUNK));
        Ok(Some((size, stream)))
    }

    pub(crate) async fn put(
        &self,
        ns: &str,
        hash: &BlobHash,
        body: ByteStream,
        max_size: u64,
    ) -> Result<PutOutcome, BlobError> {
        let key = self.key(ns, hash);
        if let Some(size) = self.head_key(&key).await? {
            return Ok(PutOutcome {
                size,
                created: false,
            });
        }
        let mut upload = None;
        let res = self.put_new(&key, hash, body, max_size, &mut upload).await;
        if res.is_err()
            && let Some(upload) = upload.take()
        {
            upload.abort().await;
        }
        res
    }

    /// Streams `body` to `key`; a multipart upload it starts is left in `upload` so that the
    /// caller aborts it if this fails.
    async fn put_new(
        &self,
        key: &str,
        hash: &BlobHash,
        mut body: ByteStream,
        max_size: u64,
        upload: &mut Option<Multipart>,
    ) -> Result<PutOutcome, BlobError> {
        let mut intake = Intake::new(max_size);
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            intake.take(&chunk)?;
            buf.extend_from_slice(&chunk);
            // Strictly more than a part: a body of exactly PART_SIZE stays one PutObject.
            while buf.len() > PART_SIZE {
                let part = buf.split_to(PART_SIZE).freeze();
                if upload.is_none() {
                    *upload = Some(Multipart::create(&self.inner, key).await?);
                }
                upload
                    .as_mut()
                    .expect("created above")
                    .upload_part(part)
                    .await?;
            }
        }
        let size = intake.finish(hash)?;
        let rest = buf.freeze();
        match upload.take() {
            None => {
                debug_assert!(rest.len() <= PART_SIZE);
                self.inner
                    .client
                    .put_object()
                    .bucket(&self.inner.bucket)
                    .key(key)
                    .content_length(rest.len() as i64)
                    .body(rest.into())
                    .send()
                    .await
                    .map_err(|e| backend("PutObject", key, e))?;
            }
            Some(mut mp) => {
                // Parts are cut only when more bytes follow, so the last part is never empty.
                assert!(
                    !rest.is_empty(),
                    "a multipart upload ends with a non-empty part"
                );
                let res = match mp.upload_part(rest).await {
                    Ok(()) => mp.complete().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = res {
                    *upload = Some(mp);
                    return Err(e);
                }
            }
        }
        Ok(PutOutcome {
            size,
            created: true,
        })
    }
}

fn size_from(len: i64, what: &str, key: &str) -> Result<u64, BlobError> {
    u64::try_from(len).map_err(|_| BlobError::Backend(format!("S3 {what} {key}: size {len}")))
}

/// An open multipart upload. Dropped without `complete` or `abort` (a cancelled `put`), it
/// aborts itself from a spawned task.
struct Multipart {
    inner: Arc<Inner>,
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
    open: bool,
}

impl Multipart {
    async fn create(inner: &Arc<Inner>, key: &str) -> Result<Self, BlobError> {
        let out = inner
            .client
            .create_multipart_upload()
            .bucket(&inner.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| backend("CreateMultipartUpload", key, e))?;
        let upload_id = out.upload_id().ok_or_else(|| {
            BlobError::Backend(format!("S3 CreateMultipartUpload {key}: no upload id"))
        })?;
        Ok(Self {
            inner: Arc::clone(inner),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            parts: Vec::new(),
            open: true,
        })
    }

    async fn upload_part(&mut self, part: Bytes) -> Result<(), BlobError> {
        if self.parts.len() == MAX_PARTS {
            return Err(BlobError::Backend(format!(
                "S3 UploadPart {}: more than {MAX_PARTS} parts of {PART_SIZE} bytes",
                self.key
            )));
        }
        let number = i32::try_from(self.parts.len() + 1).expect("at most MAX_PARTS");
        let out = self
            .inner
            .client
            .upload_part()
            .bucket(&self.inner.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .content_length(part.len() as i64)
            .body(part.into())
            .send()
            .await
            .map_err(|e| backend("UploadPart", &self.key, e))?;
        let e_tag = out
            .e_tag()
            .ok_or_else(|| BlobError::Backend(format!("S3 UploadPart {}: no ETag", self.key)))?;
        // Only number and ETag: the upload was created without a checksum algorithm, so the
        // per-part CRC32 the SDK sends by default is checked per request, not at completion.
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(e_tag)
                .build(),
        );
        Ok(())
    }

    async fn complete(&mut self) -> Result<(), BlobError> {
        self.inner
            .client
            .complete_multipart_upload()
            .bucket(&self.inner.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(self.parts.clone()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| backend("CompleteMultipartUpload", &self.key, e))?;
        self.open = false;
        Ok(())
    }

    /// Best effort: a failed abort is logged (a bucket lifecycle rule for incomplete uploads
    /// is the backstop); the upload stays invisible either way.
    async fn abort(mut self) {
        self.open = false;
        abort(&self.inner, &self.key, &self.upload_id).await;
    }
}

async fn abort(inner: &Inner, key: &str, upload_id: &str) {
    let res = inner
        .client
        .abort_multipart_upload()
        .bucket(&inner.bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    if let Err(e) = res {
        tracing::warn!(key, upload_id, error = %DisplayErrorContext(e), "cannot abort an S3 multipart upload");
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let (inner, key, upload_id) = (
            Arc::clone(&self.inner),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.upload_id),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { abort(&inner, &key, &upload_id).await });
            }
            Err(_) => {
                tracing::warn!(key, upload_id, "no runtime to abort an S3 multipart upload");
            }
        }
    }
}
