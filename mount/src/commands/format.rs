//! `juicefs format`: validate the settings, prove the bucket works, write the format.

use crate::cli::FormatArgs;
use crate::meta::{self, Format, MetaError, format::check_volume_name};
use crate::object::{Compression, ObjectStore};
use std::process::ExitCode;

fn default_bucket() -> String {
    if nix::unistd::geteuid().is_root() {
        "/var/jfs/".into()
    } else {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
        format!("{home}/.juicefs/local/")
    }
}

pub fn build_format(a: &FormatArgs) -> Result<Format, String> {
    check_volume_name(&a.name).map_err(|e| e.to_string())?;
    let storage = a.storage.to_ascii_lowercase();
    if !matches!(storage.as_str(), "file" | "s3" | "minio") {
        return Err(format!(
            "--storage {storage:?} is not supported (file, s3, minio)"
        ));
    }
    let mut bucket = a.bucket.clone().unwrap_or_else(|| {
        if storage == "file" {
            default_bucket()
        } else {
            String::new()
        }
    });
    if bucket.is_empty() {
        return Err(format!(
            "--bucket is required for --storage {storage}, e.g. http://127.0.0.1:9000/mybucket"
        ));
    }
    if storage == "file" {
        let abs = std::path::absolute(&bucket).map_err(|e| format!("--bucket {bucket:?}: {e}"))?;
        bucket = abs.to_string_lossy().into_owned();
        if !bucket.ends_with('/') {
            bucket.push('/');
        }
    }
    // JuiceFS rounds the block size down to a power of two within 64 KiB..16 MiB.
    if !(64..=16384).contains(&a.block_size) {
        return Err(format!(
            "--block-size {} KiB is out of range (64 to 16384)",
            a.block_size
        ));
    }
    let block_size = 1u64 << (63 - a.block_size.leading_zeros());
    let compression = Compression::parse(&a.compress).map_err(|e| format!("--compress: {e}"))?;
    Ok(Format {
        name: a.name.clone(),
        uuid: uuid::Uuid::new_v4().to_string(),
        storage,
        bucket,
        access_key: a.access_key.clone(),
        secret_key: a.secret_key.clone(),
        block_size,
        compression: match compression {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
        .into(),
        shards: 0,
        partitions: 0,
        capacity: a.capacity << 30,
        inodes: a.inodes,
        encrypt_key: String::new(),
        hash_prefix: false,
        trash_days: a.trash_days,
        meta_version: 0,
        unknown: Default::default(),
    })
}

async fn format(a: &FormatArgs) -> Result<Format, String> {
    let mut f = build_format(a)?;
    let m = meta::create(&a.meta_url).await.map_err(|e| e.to_string())?;
    match m.load_format().await {
        Ok(old) => {
            if a.no_update {
                return Ok(old);
            }
            if !a.force {
                f.uuid = old.uuid.clone();
            }
        }
        Err(MetaError::NotFormatted(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    let store = ObjectStore::new(&f).map_err(|e| e.to_string())?;
    store
        .check()
        .await
        .map_err(|e| format!("cannot use object storage {} {}: {e}", f.storage, f.bucket))?;
    m.init(&f, a.force).await.map_err(|e| e.to_string())?;
    if f.trash_days > 0 {
        m.create_trash_root().await.map_err(|e| e.to_string())?;
    }
    Ok(f)
}

pub fn run(a: FormatArgs) -> ExitCode {
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("juicefs format: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(format(&a)) {
        Ok(f) => {
            println!("Volume is formatted as {}", f.masked().to_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("juicefs format: {e}");
            ExitCode::FAILURE
        }
    }
}
