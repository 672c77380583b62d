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
    /// `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS.
    Redis {
        url: String,
    },
}

const EXAMPLES: &str = "e.g. sqlite3:///var/lib/jfs/meta.db, postgres://user:password@127.0.0.1:5432/db or redis://:password@127.0.0.1:6379/1";

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
            "redis" | "rediss" => {
                let shown = redact(url);
                let hosts = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let hosts = hosts.rsplit_once('@').map_or(hosts, |(_, h)| h);
                if hosts.is_empty() {
                    return Err(format!("META-URL {shown:?} names no server ({EXAMPLES})"));
                }
                if hosts.contains(',') {
                    return Err(format!(
                        "META-URL {shown:?}: Redis Sentinel (master,sentinel1,...) is not supported; name the server itself"
                    ));
                }
                ::redis::IntoConnectionInfo::into_connection_info(url)
                    .map_err(|e| format!("META-URL {shown:?} is not a valid Redis address: {e}"))?;
                Ok(MetaUrl::Redis {
                    url: url.to_string(),
                })
            }
            other => Err(format!(
                "META-URL scheme {other:?} is not supported (supported: sqlite3://, postgres://, redis://, rediss://; {EXAMPLES})"
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
    fn redis_forms() {
        for url in [
            "redis://127.0.0.1:6379/1",
            "redis://:pw@redis.db:6379/2",
            "redis://user:pw@h",
            "rediss://h:6380/3",
        ] {
            assert_eq!(
                MetaUrl::parse(url).unwrap(),
                MetaUrl::Redis { url: url.into() }
            );
        }
        let e = MetaUrl::parse("redis://:secret@master,s1:26379,s2/1").unwrap_err();
        assert!(e.contains("Sentinel") && !e.contains("secret"), "{e}");
        let e = MetaUrl::parse("redis://:secret@h:6379/x").unwrap_err();
        assert!(
            e.contains("not a valid Redis address") && !e.contains("secret"),
            "{e}"
        );
        assert!(
            MetaUrl::parse("redis://")
                .unwrap_err()
                .contains("names no server")
        );
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
        assert_eq!(redact("rediss://u:p@w@h/1"), "rediss://u:****@h/1");
    }
}
