//! META-URL parsing: which engine, where, and how to print it without its password.

#[derive(Debug, PartialEq, Eq)]
pub enum MetaUrl {
    Sqlite {
        path: String,
    },
    /// A tokio-postgres connection string: a URL or the libpq `key=value` form.
    Postgres {
        conn: String,
    },
}

const EXAMPLES: &str =
    "e.g. sqlite3:///var/lib/jfs/meta.db or postgres://user:password@127.0.0.1:5432/db";

impl MetaUrl {
    pub fn parse(url: &str) -> Result<MetaUrl, String> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "META-URL {:?} has no scheme ({EXAMPLES})",
                redact(url)
            ));
        };
        match scheme {
            "sqlite3" | "sqlite" => {
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(format!(
                        "META-URL {url:?} names no database file ({EXAMPLES})"
                    ));
                }
                Ok(MetaUrl::Sqlite {
                    path: path.to_string(),
                })
            }
            "postgres" | "postgresql" => {
                if rest.is_empty() {
                    return Err(format!(
                        "META-URL {:?} names no server ({EXAMPLES})",
                        redact(url)
                    ));
                }
                // JuiceFS 0.14 accepts only `postgres://host=.. port=.. dbname=..`; we accept
                // that form and the URL form.
                let conn = if rest.contains('=') && !rest.contains('@') && !rest.contains('/') {
                    rest.to_string()
                } else {
                    format!("postgresql://{rest}")
                };
                conn.parse::<tokio_postgres::Config>().map_err(|e| {
                    format!(
                        "META-URL {:?} is not a valid PostgreSQL address: {e}",
                        redact(url)
                    )
                })?;
                Ok(MetaUrl::Postgres { conn })
            }
            "redis" | "rediss" => Err(format!(
                "META-URL {:?}: the Redis engine is not available in this build yet; use sqlite3:// or postgres://",
                redact(url)
            )),
            other => Err(format!(
                "META-URL scheme {other:?} is not supported (supported: sqlite3://, postgres://; {EXAMPLES})"
            )),
        }
    }
}

/// Replaces a password in either PostgreSQL form (and `user:pass@`) with `****`.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.rsplit_once('@')
        && let Some((user, _)) = auth.split_once(':')
    {
        out = format!("{scheme}://{user}:****@{host}");
    }
    let mut words: Vec<String> = out.split(' ').map(str::to_string).collect();
    for w in words.iter_mut() {
        if let Some(v) = w.strip_prefix("password=")
            && !v.is_empty()
        {
            *w = "password=****".into();
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            MetaUrl::parse("sqlite3:///tmp/a.db").unwrap(),
            MetaUrl::Sqlite {
                path: "/tmp/a.db".into()
            }
        );
        assert_eq!(
            MetaUrl::parse("sqlite3://rel.db?cache=shared").unwrap(),
            MetaUrl::Sqlite {
                path: "rel.db".into()
            }
        );
        assert!(
            MetaUrl::parse("sqlite3://")
                .unwrap_err()
                .contains("no database file")
        );
    }

    #[test]
    fn postgres_both_forms() {
        let MetaUrl::Postgres { conn } =
            MetaUrl::parse("postgres://u:p@127.0.0.1:5432/db?sslmode=disable").unwrap()
        else {
            panic!()
        };
        assert!(conn.starts_with("postgresql://u:p@"));
        let MetaUrl::Postgres { conn } = MetaUrl::parse(
            "postgres://host=127.0.0.1 port=5432 user=u password=p dbname=d sslmode=disable",
        )
        .unwrap() else {
            panic!()
        };
        assert!(conn.starts_with("host=127.0.0.1"));
    }

    #[test]
    fn malformed_urls_say_why() {
        assert!(
            MetaUrl::parse("/tmp/meta.db")
                .unwrap_err()
                .contains("no scheme")
        );
        assert!(
            MetaUrl::parse("mysql://x")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            MetaUrl::parse("postgres://")
                .unwrap_err()
                .contains("names no server")
        );
        let e = MetaUrl::parse("postgres://u:secret@h:notaport/db").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:****@h/db");
        assert_eq!(
            redact("postgres://host=h password=secret dbname=d"),
            "postgres://host=h password=**** dbname=d"
        );
        assert_eq!(redact("redis://:pw@h:6379/1"), "redis://:****@h:6379/1");
    }
}
