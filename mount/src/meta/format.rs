//! The volume format: the JSON stored in `jfs_setting` under the name `format`, exactly as
//! JuiceFS 0.14 writes it, and the checks that refuse a volume this client cannot serve.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Format {
    pub name: String,
    #[serde(rename = "UUID")]
    pub uuid: String,
    pub storage: String,
    pub bucket: String,
    #[serde(default)]
    pub access_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_key: String,
    /// Block size in KiB.
    pub block_size: u64,
    pub compression: String,
    #[serde(default)]
    pub shards: u64,
    #[serde(default)]
    pub partitions: u64,
    /// Capacity in bytes (0 = unlimited).
    #[serde(default)]
    pub capacity: u64,
    /// Inode limit (0 = unlimited).
    #[serde(default)]
    pub inodes: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encrypt_key: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub hash_prefix: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trash_days: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub meta_version: u64,
    /// Fields written by other JuiceFS versions that this client does not know.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub const MIN_BLOCK_KIB: u64 = 64;
pub const MAX_BLOCK_KIB: u64 = 16 << 10;

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum FormatError {
    #[error(
        "volume format field {field} = {value} is not supported by this client ({why}); nothing was written"
    )]
    Unsupported {
        field: String,
        value: String,
        why: &'static str,
    },
    #[error("volume format is not valid JSON: {0}")]
    Json(String),
    #[error(
        "invalid volume name {0:?}: use 3 to 63 characters of letters, digits and '-', starting and ending with a letter or digit"
    )]
    Name(String),
}

impl Format {
    pub fn parse(json: &str) -> Result<Format, FormatError> {
        serde_json::from_str(json).map_err(|e| FormatError::Json(e.to_string()))
    }

    /// The JSON text as JuiceFS writes it (`MarshalIndent` with an empty indent).
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serialising a struct of strings and integers cannot fail.
        let _ = serde::Serialize::serialize(self, &mut ser);
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn block_bytes(&self) -> u64 {
        self.block_size * 1024
    }

    /// Refuses every setting this client would misread or mis-write.
    pub fn check_supported(&self) -> Result<(), FormatError> {
        let bad = |field: &str, value: String, why| {
            Err(FormatError::Unsupported {
                field: field.to_string(),
                value,
                why,
            })
        };
        if let Some((k, v)) = self.unknown.iter().next() {
            return bad(
                k,
                v.to_string(),
                "unknown field, written by a newer JuiceFS",
            );
        }
        if self.meta_version > 0 {
            return bad(
                "MetaVersion",
                self.meta_version.to_string(),
                "the volume uses the JuiceFS >= 1.0 metadata schema; this client speaks the 0.14 schema",
            );
        }
        if !matches!(self.compression.as_str(), "" | "none" | "lz4" | "zstd") {
            return bad(
                "Compression",
                self.compression.clone(),
                "supported: none, lz4, zstd",
            );
        }
        if !(MIN_BLOCK_KIB..=MAX_BLOCK_KIB).contains(&self.block_size) {
            return bad(
                "BlockSize",
                self.block_size.to_string(),
                "must be 64 KiB to 16 MiB",
            );
        }
        if self.shards > 0 {
            return bad("Shards", self.shards.to_string(), "sharded buckets");
        }
        if self.partitions > 0 {
            return bad(
                "Partitions",
                self.partitions.to_string(),
                "partitioned buckets",
            );
        }
        if !self.encrypt_key.is_empty() {
            return bad("EncryptKey", "<set>".into(), "data encryption");
        }
        if !matches!(self.storage.as_str(), "file" | "s3" | "minio") {
            return bad(
                "Storage",
                self.storage.clone(),
                "supported: file, s3, minio",
            );
        }
        Ok(())
    }

    /// A copy safe to print: secrets replaced by `removed`.
    pub fn masked(&self) -> Format {
        let mut f = self.clone();
        if !f.secret_key.is_empty() {
            f.secret_key = "removed".into();
        }
        if !f.encrypt_key.is_empty() {
            f.encrypt_key = "removed".into();
        }
        f
    }
}

pub fn check_volume_name(name: &str) -> Result<(), FormatError> {
    let b = name.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-';
    let valid = (3..=63).contains(&b.len())
        && b.iter().all(ok_char)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if valid {
        Ok(())
    } else {
        Err(FormatError::Name(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = r#"{
"Name": "testvol",
"UUID": "12edc65e-fd7f-4fb5-9c80-b5edd1047614",
"Storage": "file",
"Bucket": "/tmp/jfsref/vol1/data/",
"AccessKey": "",
"BlockSize": 4096,
"Compression": "none",
"Shards": 0,
"Partitions": 0,
"Capacity": 0,
"Inodes": 0
}"#;

    #[test]
    fn reads_and_round_trips_the_reference_format() {
        let f = Format::parse(REFERENCE).unwrap();
        assert_eq!(f.name, "testvol");
        assert_eq!(f.block_bytes(), 4 << 20);
        f.check_supported().unwrap();
        let again = Format::parse(&f.to_json()).unwrap();
        assert_eq!(again, f);
        assert!(!f.to_json().contains("SecretKey"));
        assert_eq!(
            f.to_json(),
            REFERENCE,
            "byte-identical to what JuiceFS writes"
        );
    }

    #[test]
    fn refuses_what_it_does_not_know_naming_the_field() {
        let mut f = Format::parse(REFERENCE).unwrap();
        f.compression = "brotli".into();
        let e = f.check_supported().unwrap_err().to_string();
        assert!(e.contains("Compression") && e.contains("brotli"), "{e}");

        let j = REFERENCE.replace("\"Inodes\": 0", "\"Inodes\": 0, \"EnableACL\": true");
        let e = Format::parse(&j)
            .unwrap()
            .check_supported()
            .unwrap_err()
            .to_string();
        assert!(e.contains("EnableACL"), "{e}");

        let j = REFERENCE.replace("\"Inodes\": 0", "\"Inodes\": 0, \"MetaVersion\": 1");
        let e = Format::parse(&j)
            .unwrap()
            .check_supported()
            .unwrap_err()
            .to_string();
        assert!(e.contains("MetaVersion"), "{e}");

        let mut f = Format::parse(REFERENCE).unwrap();
        f.encrypt_key = "k".into();
        assert!(
            f.check_supported()
                .unwrap_err()
                .to_string()
                .contains("EncryptKey")
        );
    }

    #[test]
    fn volume_names() {
        for ok in ["abc", "my-vol-1", "ABC"] {
            check_volume_name(ok).unwrap();
        }
        for bad in ["ab", "a_b_c", "-abc", "abc-", &"a".repeat(64), "a/b/c"] {
            assert!(check_volume_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_secrets() {
        let mut f = Format::parse(REFERENCE).unwrap();
        f.secret_key = "topsecret".into();
        assert!(!f.masked().to_json().contains("topsecret"));
    }
}
