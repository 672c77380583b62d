//! Object storage for data blocks, through OpenDAL: the JuiceFS key layout, per-block
//! compression, and the storage kinds we support (`file`, `s3`/`minio`).

mod compress;
mod list;
mod local;
pub mod staging;

pub use list::{Listed, parse_block_name};

use crate::meta::Format;
use bytes::Bytes;
pub use compress::Compression;
use opendal::Operator;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object storage {storage} at {bucket}: {msg}")]
    Setup {
        storage: String,
        bucket: String,
        msg: String,
    },
    #[error("object {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: opendal::Error,
    },
    #[error("object {key}: {source}")]
    Local {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object {key} is corrupt: {msg}")]
    Corrupt { key: String, msg: String },
}

impl ObjectError {
    pub fn is_not_found(&self) -> bool {
        match self {
            ObjectError::Io { source, .. } => source.kind() == opendal::ErrorKind::NotFound,
            ObjectError::Local { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, ObjectError>;

/// Where objects go: a local directory directly, anything else through OpenDAL.
#[derive(Clone)]
enum Backend {
    Dir(std::sync::Arc<local::LocalDir>),
    Dal(Operator),
}

#[derive(Clone)]
pub struct ObjectStore {
    backend: Backend,
    prefix: String,
    hash_prefix: bool,
    compression: Compression,
    block_size: u64,
    /// `--writeback`: where blocks wait for their upload.
    staging: Option<std::sync::Arc<staging::Staging>>,
}

/// `http://host:port/bucket` (path style) or `https://bucket.host` (virtual host style).
pub fn parse_s3_bucket(url: &str) -> std::result::Result<(String, String, bool), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("bucket {url:?} must be a URL like http://127.0.0.1:9000/mybucket")
    })?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/');
    if host.is_empty() {
        return Err(format!("bucket URL {url:?} has no host"));
    }
    if !path.is_empty() {
        if path.contains('/') {
            return Err(format!(
                "bucket URL {url:?}: the path must be just the bucket name"
            ));
        }
        return Ok((format!("{scheme}://{host}"), path.to_string(), false));
    }
    let (bucket, domain) = host.split_once('.').ok_or_else(|| {
        format!("bucket URL {url:?} names no bucket (use http://host:port/bucket)")
    })?;
    Ok((format!("{scheme}://{domain}"), bucket.to_string(), true))
}

fn setup_err(f: &Format, msg: impl ToString) -> ObjectError {
    ObjectError::Setup {
        storage: f.storage.clone(),
        bucket: f.bucket.clone(),
        msg: msg.to_string(),
    }
}

impl ObjectStore {
    pub fn new(f: &Format) -> Result<ObjectStore> {
        // Installs OpenDAL's HTTP transport once per process (later calls do nothing).
        opendal::install_default();
        let op = match f.storage.as_str() {
            "file" => {
                return Ok(ObjectStore {
                    backend: Backend::Dir(std::sync::Arc::new(local::LocalDir::new(&f.bucket))),
                    prefix: format!("{}/", f.name),
                    hash_prefix: f.hash_prefix,
                    compression: Compression::parse(&f.compression).map_err(|e| setup_err(f, e))?,
                    block_size: f.block_bytes(),
                    staging: None,
                });
            }
            "s3" | "minio" => {
                let (endpoint, bucket, vhost) =
                    parse_s3_bucket(&f.bucket).map_err(|e| setup_err(f, e))?;
                let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
                let mut b = opendal::services::S3::default()
                    .endpoint(&endpoint)
                    .bucket(&bucket)
                    .region(&region)
                    .disable_config_load()
                    .disable_ec2_metadata();
                if vhost {
                    b = b.enable_virtual_host_style();
                }
                if !f.access_key.is_empty() {
                    b = b
                        .access_key_id(&f.access_key)
                        .secret_access_key(&f.secret_key);
                } else {
                    b = b.skip_signature();
                }
                Operator::new(b).map_err(|e| setup_err(f, e))?
            }
            other => {
                return Err(setup_err(
                    f,
                    format!("storage type {other:?} is not supported (file, s3, minio)"),
                ));
            }
        };
        let op = op
            .layer(opendal::layers::TimeoutLayer::new().with_timeout(Duration::from_secs(60)))
            .layer(
                opendal::layers::RetryLayer::new()
                    .with_max_times(5)
                    .with_jitter(),
            );
        Ok(ObjectStore {
            backend: Backend::Dal(op),
            prefix: format!("{}/", f.name),
            hash_prefix: f.hash_prefix,
            compression: Compression::parse(&f.compression).map_err(|e| setup_err(f, e))?,
            block_size: f.block_bytes(),
            staging: None,
        })
    }

    /// Turns on `--writeback`: blocks are staged under `dir`, and an uploader task (spawned
    /// here, so call it inside the runtime) uploads them, `max_uploads` at once.
    pub fn with_staging(mut self, dir: &std::path::Path, max_uploads: usize) -> ObjectStore {
        let (st, rx) = staging::Staging::new(dir);
        let st = std::sync::Arc::new(st);
        self.staging = Some(st.clone());
        tokio::spawn(self.clone().upload_staged(st, rx, max_uploads));
        self
    }

    pub fn staging(&self) -> Option<&std::sync::Arc<staging::Staging>> {
        self.staging.as_ref()
    }

    /// A block key without the volume prefix: its path under the staging directory.
    fn staged_name<'a>(&self, key: &'a str) -> &'a str {
        key.strip_prefix(&self.prefix).unwrap_or(key)
    }

    /// Uploads staged blocks as they come, `max_uploads` at once, each retried with backoff
    /// until it lands (or its file is deleted). Runs for the life of the mount.
    async fn upload_staged(
        self,
        st: std::sync::Arc<staging::Staging>,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
        max_uploads: usize,
    ) {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_uploads.max(1)));
        while let Some(rel) = rx.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (store, st) = (self.clone(), st.clone());
            tokio::spawn(async move {
                store.upload_one(&st, &rel).await;
                st.done();
                drop(slot);
            });
        }
    }

    async fn upload_one(&self, st: &staging::Staging, rel: &str) {
        let key = format!("{}{rel}", self.prefix);
        let mut wait = Duration::from_secs(1);
        // Gone: the file was deleted before its upload, and its blocks with it.
        while let Some(data) = st.get(rel).await {
            match self.put(&key, self.compression.compress(data)).await {
                Ok(()) => {
                    if let Err(e) = st.remove(rel).await {
                        tracing::warn!("writeback: removing staged {rel} after its upload: {e}");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!("writeback: upload of {key} failed, retrying in {wait:?}: {e}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    pub fn block_key(&self, id: u64, index: u32, size: u32) -> String {
        if self.hash_prefix {
            format!(
                "{}chunks/{:02X}/{}/{}_{}_{}",
                self.prefix,
                id % 256,
                id / 1_000_000,
                id,
                index,
                size
            )
        } else {
            format!(
                "{}chunks/{}/{}/{}_{}_{}",
                self.prefix,
                id / 1_000_000,
                id / 1000,
                id,
                index,
                size
            )
        }
    }

    /// Length of block `index` of a slice of `slice_size` bytes (only the last is short).
    pub fn block_len(&self, slice_size: u32, index: u32) -> u32 {
        let start = index as u64 * self.block_size;
        (slice_size as u64 - start).min(self.block_size) as u32
    }

    pub async fn put_block(&self, id: u64, index: u32, data: Bytes) -> Result<()> {
        let key = self.block_key(id, index, data.len() as u32);
        if let Some(st) = &self.staging {
            match st.stage(self.staged_name(&key), data.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => tracing::warn!("writeback: cannot stage {key} ({e}); uploading it now"),
            }
        }
        let body = self.compression.compress(data);
        self.put(&key, body).await
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        let (start, len) = (std::time::Instant::now(), body.len() as u64);
        let r = self.put_inner(key, body).await;
        crate::metrics::METRICS.object_request("PUT", start.elapsed(), len);
        r
    }

    async fn put_inner(&self, key: &str, body: Bytes) -> Result<()> {
        match &self.backend {
            Backend::Dir(d) => d.put(key, body).await.map_err(|source| ObjectError::Local {
                key: key.to_string(),
                source,
            }),
            Backend::Dal(op) => {
                op.write(key, body)
                    .await
                    .map(|_| ())
                    .map_err(|source| ObjectError::Io {
                        key: key.to_string(),
                        source,
                    })
            }
        }
    }

    /// `size_hint`: the bytes expected, so the body lands in one buffer of the right size
    /// as it arrives (collecting it first and joining it after held each block twice).
    async fn get(&self, key: &str, size_hint: usize) -> Result<Bytes> {
        let start = std::time::Instant::now();
        let r = self.get_inner(key, size_hint).await;
        let len = r.as_ref().map_or(0, |b| b.len() as u64);
        crate::metrics::METRICS.object_request("GET", start.elapsed(), len);
        r
    }

    async fn get_inner(&self, key: &str, size_hint: usize) -> Result<Bytes> {
        match &self.backend {
            Backend::Dir(d) => d.get(key).await.map_err(|source| ObjectError::Local {
                key: key.to_string(),
                source,
            }),
            Backend::Dal(op) => {
                let io = |source| ObjectError::Io {
                    key: key.to_string(),
                    source,
                };
                let mut buf = bytes::BytesMut::with_capacity(size_hint);
                op.reader(key)
                    .await
                    .map_err(io)?
                    .read_into(&mut buf, ..)
                    .await
                    .map_err(io)?;
                Ok(buf.freeze())
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let start = std::time::Instant::now();
        let r = self.delete_inner(key).await;
        crate::metrics::METRICS.object_request("DELETE", start.elapsed(), 0);
        r
    }

    async fn delete_inner(&self, key: &str) -> Result<()> {
        match &self.backend {
            Backend::Dir(d) => d.delete(key).await.map_err(|source| ObjectError::Local {
                key: key.to_string(),
                source,
            }),
            Backend::Dal(op) => match op.delete(key).await {
                Err(e) if e.kind() != opendal::ErrorKind::NotFound => Err(ObjectError::Io {
                    key: key.to_string(),
                    source: e,
                }),
                _ => Ok(()),
            },
        }
    }

    pub async fn get_block(&self, id: u64, index: u32, size: u32) -> Result<Bytes> {
        let key = self.block_key(id, index, size);
        if let Some(st) = &self.staging
            && let Some(b) = st.get(self.staged_name(&key)).await
            && b.len() == size as usize
        {
            return Ok(b);
        }
        // Both backends hand back a buffer of the object's own size (a file read or mapped
        // whole, an S3 body read into a buffer of `size`), so a cached small block pins no
        // more than itself.
        let raw = self.get(&key, size as usize).await?;
        let data = self
            .compression
            .decompress(raw, size as usize)
            .map_err(|msg| ObjectError::Corrupt {
                key: key.clone(),
                msg,
            })?;
        if data.len() != size as usize {
            return Err(ObjectError::Corrupt {
                key,
                msg: format!("{} bytes, expected {size}", data.len()),
            });
        }
        Ok(data)
    }

    /// Deletes every block of a slice; missing blocks are not an error.
    pub async fn delete_slice(&self, id: u64, size: u32) -> Result<()> {
        let blocks = (size as u64).div_ceil(self.block_size).max(1) as u32;
        for i in 0..blocks {
            let key = self.block_key(id, i, self.block_len(size, i));
            if let Some(st) = &self.staging {
                st.remove(self.staged_name(&key))
                    .await
                    .map_err(|source| ObjectError::Local {
                        key: key.clone(),
                        source,
                    })?;
            }
            self.delete(&key).await?;
        }
        Ok(())
    }

    /// Proves the bucket and credentials work: lists it (some servers accept a PUT into a
    /// bucket that does not exist), then writes, reads back and deletes a probe object.
    pub async fn check(&self) -> Result<()> {
        match &self.backend {
            Backend::Dir(d) => d.check().await.map_err(|source| ObjectError::Local {
                key: String::new(),
                source,
            })?,
            Backend::Dal(op) => {
                op.list(&self.prefix)
                    .await
                    .map_err(|source| ObjectError::Io {
                        key: self.prefix.clone(),
                        source,
                    })?;
            }
        }
        let key = format!("{}testing/{}", self.prefix, uuid::Uuid::new_v4());
        self.put(&key, Bytes::from_static(b"juicefs-probe")).await?;
        let back = self.get(&key, 16).await?;
        self.delete(&key).await?;
        if back.as_ref() != b"juicefs-probe" {
            return Err(ObjectError::Corrupt {
                key,
                msg: "probe object read back different bytes".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(bucket: &str) -> Format {
        Format::parse(&format!(
            r#"{{"Name":"vol","UUID":"u","Storage":"file","Bucket":"{bucket}","AccessKey":"","BlockSize":4096,"Compression":"none","Shards":0,"Partitions":0,"Capacity":0,"Inodes":0}}"#
        ))
        .unwrap()
    }

    #[test]
    fn key_layout_matches_juicefs() {
        let s = ObjectStore::new(&fmt("/tmp/x/")).unwrap();
        assert_eq!(s.block_key(2, 1, 4194304), "vol/chunks/0/0/2_1_4194304");
        assert_eq!(
            s.block_key(1234567, 0, 10),
            "vol/chunks/1/1234/1234567_0_10"
        );
        assert_eq!(s.block_len(10_000_000, 2), 1_611_392);
        assert_eq!(s.block_len(10_000_000, 0), 4 << 20);
    }

    #[test]
    fn s3_bucket_urls() {
        assert_eq!(
            parse_s3_bucket("http://127.0.0.1:9000/bkt").unwrap(),
            ("http://127.0.0.1:9000".into(), "bkt".into(), false)
        );
        assert_eq!(
            parse_s3_bucket("https://bkt.s3.amazonaws.com").unwrap(),
            ("https://s3.amazonaws.com".into(), "bkt".into(), true)
        );
        assert!(parse_s3_bucket("bkt").is_err());
        assert!(parse_s3_bucket("http://h/a/b").is_err());
    }

    #[tokio::test]
    async fn blocks_round_trip_on_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = fmt(&format!("{}/", dir.path().display()));
        for c in ["none", "lz4", "zstd"] {
            f.compression = c.into();
            let s = ObjectStore::new(&f).unwrap();
            let data = Bytes::from(vec![7u8; 100_000]);
            s.put_block(9, 0, data.clone()).await.unwrap();
            assert_eq!(s.get_block(9, 0, 100_000).await.unwrap(), data);
            assert!(dir.path().join("vol/chunks/0/0/9_0_100000").exists());
            s.delete_slice(9, 100_000).await.unwrap();
            assert!(s.get_block(9, 0, 100_000).await.unwrap_err().is_not_found());
        }
        ObjectStore::new(&f).unwrap().check().await.unwrap();
    }
}
