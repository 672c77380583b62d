//! Webhook TLS material: a CA and a serving certificate for the webhook Service's DNS
//! names, what to do with existing material (keep, new leaf, new CA), and the Kubernetes
//! side (`publish`): the Secret the webhook mounts and the caBundle of the
//! MutatingWebhookConfiguration. During a CA rotation the bundle carries the old and the new
//! CA, so the API server trusts the webhook before and after it switches certificates.

pub mod publish;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate does not parse: {0}")]
    Parse(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// What the webhook Secret holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Material {
    pub ca: Pem,
    pub leaf: Pem,
    /// PEM CAs the API server must trust (the current one, plus the previous during rotation).
    pub bundle: String,
}

pub const CA_DAYS: i64 = 3650;
pub const LEAF_DAYS: i64 = 365;
/// Renew this long before expiry.
pub const RENEW_BEFORE_DAYS: i64 = 30;

/// The DNS names a Service answers to inside the cluster.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

pub fn new_ca(now: OffsetDateTime) -> Result<Pem, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, "juicefs-webhook-ca");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(CA_DAYS);
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

pub fn issue(ca: &Pem, dns: &[String], now: OffsetDateTime) -> Result<Pem, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let mut p = CertificateParams::new(dns.to_vec())?;
    p.distinguished_name
        .push(DnType::CommonName, dns.first().cloned().unwrap_or_default());
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(LEAF_DAYS);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub not_after: i64,
    pub dns: Vec<String>,
}

pub fn inspect(cert_pem: &str) -> Result<CertInfo, CertError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| CertError::Parse(e.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| CertError::Parse(e.to_string()))?;
    let dns = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CertInfo {
        not_after: cert.validity().not_after.timestamp(),
        dns,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Keep,
    NewLeaf,
    NewCa,
}

/// Keep what is there while it is valid for long enough and names the right hosts.
pub fn plan(existing: Option<&Material>, dns: &[String], now: OffsetDateTime) -> Plan {
    let Some(m) = existing else {
        return Plan::NewCa;
    };
    let horizon = (now + Duration::days(RENEW_BEFORE_DAYS)).unix_timestamp();
    match inspect(&m.ca.cert) {
        Ok(ca) if ca.not_after > horizon => {}
        _ => return Plan::NewCa,
    }
    match inspect(&m.leaf.cert) {
        Ok(leaf) if leaf.not_after > horizon && dns.iter().all(|d| leaf.dns.contains(d)) => {
            Plan::Keep
        }
        _ => Plan::NewLeaf,
    }
}

/// The material to store next (equal to `existing` when nothing needs to change).
pub fn next(
    existing: Option<&Material>,
    dns: &[String],
    now: OffsetDateTime,
) -> Result<Material, CertError> {
    match (plan(existing, dns, now), existing) {
        (Plan::Keep, Some(m)) => Ok(m.clone()),
        (Plan::NewLeaf, Some(m)) => Ok(Material {
            leaf: issue(&m.ca, dns, now)?,
            ..m.clone()
        }),
        (_, old) => {
            let ca = new_ca(now)?;
            let leaf = issue(&ca, dns, now)?;
            // Trust the old CA too until the webhook serves the new leaf.
            let bundle = match old {
                Some(o) => format!("{}{}", ca.cert, o.ca.cert),
                None => ca.cert.clone(),
            };
            Ok(Material { ca, leaf, bundle })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        service_dns_names("juicefs-admission-webhook", "kube-system")
    }

    #[test]
    fn fresh_material_names_the_service_and_lasts() {
        let now = OffsetDateTime::now_utc();
        let m = next(None, &names(), now).unwrap();
        let leaf = inspect(&m.leaf.cert).unwrap();
        assert_eq!(leaf.dns, names());
        assert!(leaf.not_after > (now + Duration::days(300)).unix_timestamp());
        assert_eq!(m.bundle, m.ca.cert);
        assert_eq!(plan(Some(&m), &names(), now), Plan::Keep);
        assert_eq!(
            next(Some(&m), &names(), now).unwrap(),
            m,
            "nothing to do, nothing changes"
        );
    }

    #[test]
    fn renewals_happen_before_expiry_and_on_new_names() {
        let now = OffsetDateTime::now_utc();
        let m = next(None, &names(), now).unwrap();
        let later = now + Duration::days(LEAF_DAYS - RENEW_BEFORE_DAYS + 1);
        assert_eq!(plan(Some(&m), &names(), later), Plan::NewLeaf);
        let renewed = next(Some(&m), &names(), later).unwrap();
        assert_eq!(renewed.ca, m.ca, "a new leaf keeps the CA and its bundle");
        assert_ne!(renewed.leaf, m.leaf);
        let mut more = names();
        more.push("extra.example".into());
        assert_eq!(plan(Some(&m), &more, now), Plan::NewLeaf);
        let ca_end = now + Duration::days(CA_DAYS - RENEW_BEFORE_DAYS + 1);
        assert_eq!(plan(Some(&m), &names(), ca_end), Plan::NewCa);
        let rotated = next(Some(&m), &names(), ca_end).unwrap();
        assert!(rotated.bundle.contains(&rotated.ca.cert) && rotated.bundle.contains(&m.ca.cert));
        let broken = Material {
            leaf: Pem {
                cert: "garbage".into(),
                key: String::new(),
            },
            ..m.clone()
        };
        assert_eq!(plan(Some(&broken), &names(), now), Plan::NewLeaf);
    }
}
