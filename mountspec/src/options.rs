//! Mount options as users write them in PVs, StorageClasses and the ConfigMap: a list of
//! `key[=value]` items. Validation names the bad item and shows the right form.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("invalid mount option {given:?}: options are comma-separated: {fixed}")]
    Spaces { given: String, fixed: String },
    #[error("invalid mount option {0:?}: more than one '='")]
    TwoEquals(String),
    #[error("invalid mount option {0:?}: empty name")]
    EmptyName(String),
    #[error("mount option {0:?} is set by the driver and cannot be given")]
    Reserved(String),
}

/// One `key[=value]` mount option.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct MountOption {
    pub key: String,
    pub value: Option<String>,
}

impl fmt::Display for MountOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}", self.key, v),
            None => f.write_str(&self.key),
        }
    }
}

/// Options the driver itself decides; a user setting them would break the container.
const RESERVED: &[&str] = &["foreground", "background", "d", "no-update", "metrics"];

/// Parses one item: `k`, `k=v`, `k = v` (normalised).
pub fn parse_item(item: &str) -> Result<MountOption, OptionError> {
    let item = item.trim();
    // `k = v` is one option; anything else with blanks is several written without commas.
    let tight = item.split('=').map(str::trim).collect::<Vec<_>>().join("=");
    if tight.contains(char::is_whitespace) {
        let fixed = tight.split_whitespace().collect::<Vec<_>>().join(",");
        return Err(OptionError::Spaces {
            given: item.to_string(),
            fixed,
        });
    }
    let item = tight.as_str();
    let (key, value) = match item.split_once('=') {
        Some((k, v)) => {
            if v.contains('=') {
                return Err(OptionError::TwoEquals(item.to_string()));
            }
            (k.trim(), Some(v.trim().to_string()))
        }
        None => (item, None),
    };
    if key.is_empty() {
        return Err(OptionError::EmptyName(item.to_string()));
    }
    if RESERVED.contains(&key) {
        return Err(OptionError::Reserved(key.to_string()));
    }
    Ok(MountOption {
        key: key.to_string(),
        value,
    })
}

/// Parses a comma-separated list (empty items are skipped).
pub fn parse_list(list: &str) -> Result<Vec<MountOption>, OptionError> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(parse_item)
        .collect()
}

/// `later` overrides `earlier` key by key; order: `earlier` minus overridden keys, then `later`.
pub fn merge(earlier: Vec<MountOption>, later: Vec<MountOption>) -> Vec<MountOption> {
    let mut out: Vec<MountOption> = earlier
        .into_iter()
        .filter(|o| !later.iter().any(|l| l.key == o.key))
        .collect();
    for l in later {
        out.retain(|o| o.key != l.key);
        out.push(l);
    }
    out
}

pub fn join(opts: &[MountOption]) -> String {
    opts.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_show_the_comma_form() {
        let e = parse_list("debug foreground").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid mount option \"debug foreground\": options are comma-separated: debug,foreground"
        );
        let e = parse_list("allow_other,cache-size=100 buffer-size=300").unwrap_err();
        assert!(
            e.to_string().contains("cache-size=100,buffer-size=300"),
            "{e}"
        );
    }

    #[test]
    fn items_are_normalised_and_checked() {
        assert_eq!(
            parse_list(" allow_other , cache-size = 100,,").unwrap(),
            vec![
                MountOption {
                    key: "allow_other".into(),
                    value: None
                },
                MountOption {
                    key: "cache-size".into(),
                    value: Some("100".into())
                }
            ]
        );
        assert_eq!(
            parse_item("a=b=c"),
            Err(OptionError::TwoEquals("a=b=c".into()))
        );
        assert_eq!(parse_item("=x"), Err(OptionError::EmptyName("=x".into())));
        assert_eq!(
            parse_item("metrics=0.0.0.0:1"),
            Err(OptionError::Reserved("metrics".into()))
        );
    }

    #[test]
    fn later_options_win_by_key() {
        let a = parse_list("cache-size=1,allow_other,subdir=/a").unwrap();
        let b = parse_list("cache-size=2").unwrap();
        assert_eq!(join(&merge(a, b)), "allow_other,subdir=/a,cache-size=2");
    }
}
