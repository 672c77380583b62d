//! Label and field selectors (equality, inequality and existence; set-based forms refused).

use serde_json::Value;
use std::collections::HashMap;

#[derive(Clone, Debug, Default)]
pub struct Selector {
    labels: Vec<Term>,
    fields: Vec<Term>,
}

#[derive(Clone, Debug)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

fn parse(s: &str, allow_exists: bool) -> Result<Vec<Term>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.contains(" in ") || part.contains(" notin ") || part.contains('(') {
            return Err(format!(
                "the fake API does not support set-based selector {part:?}"
            ));
        }
        let t = if let Some((k, v)) = part.split_once("!=") {
            Term::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Term::Eq(k.trim().into(), v.trim().into())
        } else if !allow_exists {
            return Err(format!("field selector {part:?} needs = or !="));
        } else if let Some(k) = part.strip_prefix('!') {
            Term::Absent(k.trim().into())
        } else {
            Term::Exists(part.into())
        };
        out.push(t);
    }
    Ok(out)
}

fn field<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, k| v.get(k))
}

impl Selector {
    pub fn from_query(q: &HashMap<String, String>) -> Result<Selector, String> {
        Ok(Selector {
            labels: parse(q.get("labelSelector").map_or("", String::as_str), true)?,
            fields: parse(q.get("fieldSelector").map_or("", String::as_str), false)?,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let label = |k: &str| {
            field(obj, "metadata.labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        };
        let ok_label = self.labels.iter().all(|t| match t {
            Term::Eq(k, v) => label(k) == Some(v),
            Term::Ne(k, v) => label(k) != Some(v),
            Term::Exists(k) => label(k).is_some(),
            Term::Absent(k) => label(k).is_none(),
        });
        let text = |p: &str| {
            field(obj, p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let ok_field = self.fields.iter().all(|t| match t {
            Term::Eq(k, v) => text(k) == *v,
            Term::Ne(k, v) => text(k) != *v,
            _ => true,
        });
        ok_label && ok_field
    }
}
