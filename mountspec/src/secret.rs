//! The user Secret that describes a volume, with the JuiceFS CSI driver's keys. Values that
//! grant access (`metaurl`, keys, `envs`) are never copied out of it: the container reads
//! them through `secretKeyRef`, so only key names travel in specs and logs.

use crate::{SpecError, invalid};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What the Secret says, minus the secret values themselves.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VolumeSecret {
    /// Volume (file system) name.
    pub name: String,
    pub storage: Option<String>,
    pub bucket: Option<String>,
    pub has_access_key: bool,
    pub has_secret_key: bool,
    pub has_session_token: bool,
    /// `--key[=value]` flags for `juicefs format`, from `format-options` and the
    /// individual keys (`block-size`, `compress`, `trash-days`, `capacity`, `inodes`).
    pub format_options: Vec<String>,
    /// Environment variable names from `envs` (values stay in the Secret).
    pub env_names: Vec<String>,
    /// `configs`: other Secrets (of the mount container's namespace) mounted whole at
    /// these absolute paths.
    pub configs: BTreeMap<String, String>,
    /// Keys that mean nothing to a Community Edition volume, each with why: the Go driver
    /// ignores them too, so they are reported (admission warnings, logs), not refused.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// SHA-256 of every key and value: a credential change gives a new settings hash
    /// without the credential ever leaving the Secret.
    pub digest: String,
}

/// Key names of the Secret copy the container reads (`secret_copy_data`).
pub const KEY_METAURL: &str = "metaurl";
pub const KEY_ACCESS_KEY: &str = "access-key";
pub const KEY_SECRET_KEY: &str = "secret-key";
pub const KEY_SESSION_TOKEN: &str = "session-token";
pub const ENV_KEY_PREFIX: &str = "envs.";

const FORMAT_KEYS: &[&str] = &["block-size", "compress", "trash-days", "capacity", "inodes"];

/// Keys only the Enterprise Edition's `juicefs auth` reads, and what to do instead.
const EE_ONLY_KEYS: &[(&str, &str)] = &[
    (
        "token",
        "the volume has a metaurl, so it is a Community Edition volume",
    ),
    (
        "bucket2",
        "a second bucket (data replication) is an Enterprise Edition feature",
    ),
    (
        "access-key2",
        "a second bucket (data replication) is an Enterprise Edition feature",
    ),
    (
        "secret-key2",
        "a second bucket (data replication) is an Enterprise Edition feature",
    ),
    (
        "passphrase",
        "it unlocks an Enterprise Edition key; this client does not encrypt data",
    ),
    (
        "initconfig",
        "it caches an Enterprise Edition client configuration",
    ),
    (
        "subdir",
        "for a Community Edition volume use the mount option subdir=PATH or the PV's subPath",
    ),
];

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    data.get(key)
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Renames the legacy spellings the Go driver also accepts.
pub fn normalise(data: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    let mut out = data.clone();
    for (old, new) in [
        ("accesskey", "access-key"),
        ("secretkey", "secret-key"),
        ("secretkey2", "secret-key2"),
    ] {
        if let Some(v) = out.remove(old) {
            out.entry(new.to_string()).or_insert(v);
        }
    }
    out
}

/// A YAML-or-JSON map of strings (`envs`, `configs`).
pub fn string_map(what: &str, raw: &str) -> Result<BTreeMap<String, String>, SpecError> {
    if raw.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let v: serde_norway::Value = serde_norway::from_str(raw)
        .map_err(|e| invalid(what, format!("not a YAML or JSON map of strings: {e}")))?;
    let m = v
        .as_mapping()
        .ok_or_else(|| invalid(what, "must be a map, e.g. {\"TZ\": \"UTC\"}"))?;
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let k = k
            .as_str()
            .ok_or_else(|| invalid(what, "keys must be strings"))?;
        let v = match v {
            serde_norway::Value::String(s) => s.clone(),
            serde_norway::Value::Number(n) => n.to_string(),
            serde_norway::Value::Bool(b) => b.to_string(),
            _ => return Err(invalid(what, format!("value of {k:?} must be a string"))),
        };
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

fn valid_env_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses the user Secret `secret_id` (`namespace/name`, for messages).
pub fn parse(secret_id: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<VolumeSecret, SpecError> {
    let data = normalise(data);
    let missing = |key, hint| SpecError::MissingKey {
        secret: secret_id.to_string(),
        key,
        hint,
    };
    let name = text(&data, "name").ok_or_else(|| missing("name", " (the JuiceFS volume name)"))?;
    if text(&data, "metaurl").is_none() {
        if text(&data, "token").is_some() {
            return Err(SpecError::Unsupported(format!(
                "Secret {secret_id}: JuiceFS Enterprise Edition volumes (key \"token\") are not supported; give \"metaurl\" for a Community Edition volume"
            )));
        }
        return Err(missing(
            "metaurl",
            " (e.g. redis://host:6379/1 or postgres://user:pass@host/db)",
        ));
    }
    if text(&data, "encrypt_rsa_key").is_some() {
        return Err(SpecError::Unsupported(format!(
            "Secret {secret_id}: key \"encrypt_rsa_key\": data encryption is not supported by this client (it refuses to mount encrypted volumes); remove the key and use an unencrypted volume"
        )));
    }
    if let Some(n) = text(&data, "shards").filter(|n| n != "0") {
        return Err(SpecError::Unsupported(format!(
            "Secret {secret_id}: key \"shards\" is {n:?}: sharded buckets are not supported by this client; remove the key (or set it to 0)"
        )));
    }
    let warnings = EE_ONLY_KEYS
        .iter()
        .filter(|(k, _)| text(&data, k).is_some())
        .map(|(k, why)| format!("Secret {secret_id}: key {k:?} is ignored: {why}"))
        .collect();
    let mut format_options = Vec::new();
    for key in FORMAT_KEYS {
        if let Some(v) = text(&data, key) {
            format_options.push(format!("--{key}={v}"));
        }
    }
    if let Some(list) = text(&data, "format-options") {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = match item.split_once('=') {
                Some((k, v)) if v.trim().is_empty() => {
                    return Err(invalid(
                        format!("Secret {secret_id}: format-options"),
                        format!("{item:?} has an empty value; write {k}=VALUE or just {k}"),
                    ));
                }
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            if k.contains(char::is_whitespace) {
                return Err(invalid(
                    format!("Secret {secret_id}: format-options"),
                    format!("{item:?}: options are comma-separated"),
                ));
            }
            // The session token is a credential: it goes through the environment.
            if k == "session-token" {
                continue;
            }
            format_options.push(match v {
                Some(v) => format!("--{k}={v}"),
                None => format!("--{k}"),
            });
        }
    }
    let envs = string_map(
        &format!("Secret {secret_id}: envs"),
        &text(&data, "envs").unwrap_or_default(),
    )?;
    if let Some(bad) = envs.keys().find(|k| !valid_env_name(k)) {
        return Err(invalid(
            format!("Secret {secret_id}: envs"),
            format!("{bad:?} is not a valid environment variable name"),
        ));
    }
    let configs = string_map(
        &format!("Secret {secret_id}: configs"),
        &text(&data, "configs").unwrap_or_default(),
    )?;
    for (name, path) in &configs {
        check_config(secret_id, name, path)?;
    }
    let has_session_token = text(&data, "format-options")
        .is_some_and(|l| l.split(',').any(|i| i.trim().starts_with("session-token=")));
    let mut h = Sha256::new();
    for (k, v) in &data {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    Ok(VolumeSecret {
        name,
        storage: text(&data, "storage"),
        bucket: text(&data, "bucket"),
        has_access_key: text(&data, "access-key").is_some(),
        has_secret_key: text(&data, "secret-key").is_some(),
        has_session_token,
        format_options,
        env_names: envs.into_keys().collect(),
        configs,
        warnings,
        digest: hex(&h.finalize()),
    })
}

/// A Secret name (DNS subdomain) and an absolute path that stays where it says.
fn check_config(secret_id: &str, name: &str, path: &str) -> Result<(), SpecError> {
    let what = || format!("Secret {secret_id}: configs");
    let dns = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !dns {
        return Err(invalid(
            what(),
            format!("{name:?} is not a Secret name (lowercase letters, digits, '-' and '.')"),
        ));
    }
    crate::check_abs_path(&what(), path)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn every_key_is_read() {
        let s = parse(
            "ns/s",
            &data(&[
                ("name", "vol"),
                ("metaurl", "redis://:pw@r:6379/1"),
                ("storage", "s3"),
                ("bucket", "http://minio:9000/b"),
                ("accesskey", "AK"),
                ("secret-key", "SK"),
                ("block-size", "1024"),
                ("compress", "lz4"),
                ("trash-days", "0"),
                ("capacity", "10"),
                ("inodes", "1000"),
                ("format-options", "hash-prefix, session-token=t0k3n-v4lue"),
                ("envs", "{\"TZ\": \"UTC\", \"BASE_URL\": \"http://x\"}"),
            ]),
        )
        .unwrap();
        assert_eq!(s.name, "vol");
        assert_eq!(s.storage.as_deref(), Some("s3"));
        assert_eq!(s.bucket.as_deref(), Some("http://minio:9000/b"));
        assert!(s.has_access_key && s.has_secret_key && s.has_session_token);
        assert_eq!(
            s.format_options,
            [
                "--block-size=1024",
                "--compress=lz4",
                "--trash-days=0",
                "--capacity=10",
                "--inodes=1000",
                "--hash-prefix"
            ]
        );
        assert_eq!(s.env_names, ["BASE_URL", "TZ"]);
        let json = serde_json::to_string(&s).unwrap();
        for secret in [":pw@", "\"AK\"", "\"SK\"", "t0k3n-v4lue", "http://x"] {
            assert!(
                !json.contains(secret),
                "{secret} leaked into the parsed settings"
            );
        }
    }

    #[test]
    fn missing_and_bad_keys_say_which() {
        let e = parse("ns/s", &data(&[("metaurl", "redis://r")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ns/s") && e.contains("\"name\""), "{e}");
        let e = parse("ns/s", &data(&[("name", "v")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"metaurl\""), "{e}");
        let e = parse("ns/s", &data(&[("name", "v"), ("token", "t")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Enterprise"), "{e}");
        let base = [("name", "v"), ("metaurl", "redis://r")];
        let with = |k, v| {
            let mut d = data(&base);
            d.insert(k, Vec::from(v));
            parse("ns/s", &d).unwrap_err().to_string()
        };
        assert!(with("envs".into(), "[1, 2]").contains("must be a map"));
        assert!(
            with("envs".into(), "{\"1BAD\": \"x\"}").contains("not a valid environment variable")
        );
        assert!(with("format-options".into(), "trash-days=").contains("empty value"));
        assert!(with("format-options".into(), "a b").contains("comma-separated"));
    }

    #[test]
    fn digest_changes_with_any_value() {
        let a = parse("n/s", &data(&[("name", "v"), ("metaurl", "redis://a")])).unwrap();
        let b = parse("n/s", &data(&[("name", "v"), ("metaurl", "redis://b")])).unwrap();
        let a2 = parse("n/s", &data(&[("name", "v"), ("metaurl", "redis://a")])).unwrap();
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.digest, a2.digest);
    }
}
