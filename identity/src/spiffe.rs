//! SPIFFE IDs in the Istio/Kubernetes shape `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.
//!
//! Validation follows the SPIFFE ID specification (SPIFFE-ID.md §2): the
//! scheme is exactly `spiffe`, the trust domain uses only lowercase letters,
//! digits, `.`, `-` and `_` (at most 255 bytes), path segments use only
//! letters, digits, `.`, `-` and `_`, are non-empty and are neither `.` nor
//! `..`; no port, user info, query, fragment or percent-encoding, and the whole
//! ID is at most 2048 bytes. On top of that Mazu only accepts the workload path
//! `/ns/<namespace>/sa/<service account>` that Istio authorization policies use.

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;
use core::str::FromStr;

/// Upper bound on a whole SPIFFE ID, from the SPIFFE specification.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// Upper bound on a trust domain name, from the SPIFFE specification.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME_PREFIX: &str = "spiffe://";

/// Why a string is not an acceptable SPIFFE ID or trust domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The ID does not start with `spiffe://` (lowercase).
    #[error("SPIFFE ID must start with \"spiffe://\"")]
    WrongScheme,
    /// The ID is longer than 2048 bytes.
    #[error("SPIFFE ID longer than {MAX_SPIFFE_ID_LEN} bytes")]
    TooLong,
    /// The trust domain is empty.
    #[error("empty trust domain")]
    EmptyTrustDomain,
    /// The trust domain is longer than 255 bytes.
    #[error("trust domain longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong,
    /// The trust domain has a character outside `[a-z0-9._-]` (this also
    /// rules out ports, user info and upper case).
    #[error("trust domain may only contain a-z, 0-9, '.', '-' and '_'")]
    InvalidTrustDomainChar,
    /// The path is not `/ns/<namespace>/sa/<service account>`.
    #[error("SPIFFE ID path is not /ns/<namespace>/sa/<service-account>")]
    NotWorkloadPath,
    /// A path segment is empty, `.` or `..`.
    #[error("empty, '.' or '..' path segment")]
    InvalidSegment,
    /// A path segment has a character outside `[A-Za-z0-9._-]` (this also
    /// rules out queries, fragments and percent-encoding).
    #[error("path segments may only contain A-Z, a-z, 0-9, '.', '-' and '_'")]
    InvalidPathChar,
}

/// A validated SPIFFE trust domain, e.g. `cluster.local`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validates a trust domain name (no scheme, no path).
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        validate_trust_domain(name)?;
        Ok(Self(name.to_string()))
    }

    /// The trust domain name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(name: &str) -> Result<Self, SpiffeIdError> {
        Self::new(name)
    }
}

/// A workload's SPIFFE ID: trust domain, Kubernetes namespace and service account.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    namespace: String,
    service_account: String,
    /// The formatted URI, kept so that comparisons and logging do not re-format.
    uri: String,
}

impl SpiffeId {
    /// Builds `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`,
    /// validating both names as SPIFFE path segments.
    pub fn new(
        trust_domain: &TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        validate_segment(namespace)?;
        validate_segment(service_account)?;
        let uri = format!(
            "{SCHEME_PREFIX}{}/ns/{namespace}/sa/{service_account}",
            trust_domain.as_str()
        );
        if uri.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        Ok(Self {
            trust_domain: trust_domain.clone(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            uri,
        })
    }

    /// Parses and validates a SPIFFE ID URI of the workload shape.
    pub fn parse(uri: &str) -> Result<Self, SpiffeIdError> {
        if uri.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = uri
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        let (trust_domain, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        validate_trust_domain(trust_domain)?;
        let mut segments = path.split('/');
        // `path` starts with '/', so the first split piece is always empty.
        let leading = segments.next();
        let (ns_label, namespace, sa_label, service_account, extra) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        );
        match (
            leading,
            ns_label,
            namespace,
            sa_label,
            service_account,
            extra,
        ) {
            (Some(""), Some("ns"), Some(namespace), Some("sa"), Some(service_account), None) => {
                Self::new(
                    &TrustDomain(trust_domain.to_string()),
                    namespace,
                    service_account,
                )
            }
            _ => {
                // Report a charset problem before a shape problem: it is the more
                // specific reason for an ID such as `.../ns/a?b/sa/c`.
                for segment in path.split('/').skip(1) {
                    validate_segment(segment)?;
                }
                Err(SpiffeIdError::NotWorkloadPath)
            }
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The Kubernetes namespace (`/ns/<namespace>`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Kubernetes service account name (`/sa/<name>`).
    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The URI form, `spiffe://...`.
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.uri)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(uri: &str) -> Result<Self, SpiffeIdError> {
        Self::parse(uri)
    }
}

fn validate_trust_domain(name: &str) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    if !name
        .bytes()
        .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'))
    {
        return Err(SpiffeIdError::InvalidTrustDomainChar);
    }
    Ok(())
}

fn validate_segment(segment: &str) -> Result<(), SpiffeIdError> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(SpiffeIdError::InvalidSegment);
    }
    if !segment
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
    {
        return Err(SpiffeIdError::InvalidPathChar);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_workload_ids() {
        let id =
            SpiffeId::parse("spiffe://cluster.local/ns/default/sa/bookinfo-productpage").unwrap();
        assert_eq!(id.trust_domain().as_str(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "bookinfo-productpage");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
        );
        let td = TrustDomain::new("cluster.local").unwrap();
        assert_eq!(
            SpiffeId::new(&td, "default", "bookinfo-productpage").unwrap(),
            id
        );
        assert_eq!(
            "spiffe://a_b-c.d/ns/N.s/sa/S_a"
                .parse::<SpiffeId>()
                .unwrap()
                .namespace(),
            "N.s"
        );
    }

    #[test]
    fn rejects_malformed_ids() {
        use SpiffeIdError::*;
        let cases: &[(&str, SpiffeIdError)] = &[
            ("http://cluster.local/ns/a/sa/b", WrongScheme),
            ("SPIFFE://cluster.local/ns/a/sa/b", WrongScheme),
            ("spiffe:/cluster.local/ns/a/sa/b", WrongScheme),
            ("spiffe:///ns/a/sa/b", EmptyTrustDomain),
            ("spiffe://Cluster.local/ns/a/sa/b", InvalidTrustDomainChar),
            (
                "spiffe://cluster.local:8080/ns/a/sa/b",
                InvalidTrustDomainChar,
            ),
            (
                "spiffe://user@cluster.local/ns/a/sa/b",
                InvalidTrustDomainChar,
            ),
            ("spiffe://cluster.local", NotWorkloadPath),
            ("spiffe://cluster.local/", InvalidSegment),
            ("spiffe://cluster.local/ns/a/sa/b/", InvalidSegment),
            ("spiffe://cluster.local/ns/a/sa/b/c", NotWorkloadPath),
            ("spiffe://cluster.local/ns/a/sb/b", NotWorkloadPath),
            ("spiffe://cluster.local/workload", NotWorkloadPath),
            ("spiffe://cluster.local/ns//sa/b", InvalidSegment),
            ("spiffe://cluster.local/ns/../sa/b", InvalidSegment),
            ("spiffe://cluster.local/ns/./sa/b", InvalidSegment),
            ("spiffe://cluster.local/ns/a%2F/sa/b", InvalidPathChar),
            ("spiffe://cluster.local/ns/a/sa/b?x=1", InvalidPathChar),
            ("spiffe://cluster.local/ns/a/sa/b#f", InvalidPathChar),
            ("spiffe://cluster.local/ns/a\0/sa/b", InvalidPathChar),
            ("spiffe://cluster.local/ns/\u{e9}/sa/b", InvalidPathChar),
        ];
        for (uri, want) in cases {
            assert_eq!(SpiffeId::parse(uri), Err(*want), "{uri}");
        }
    }

    #[test]
    fn enforces_length_limits() {
        let long_td = "a".repeat(256);
        assert_eq!(
            TrustDomain::new(&long_td),
            Err(SpiffeIdError::TrustDomainTooLong)
        );
        assert!(TrustDomain::new(&"a".repeat(255)).is_ok());
        let td = TrustDomain::new("t").unwrap();
        let long_ns = "n".repeat(2048);
        assert_eq!(
            SpiffeId::new(&td, &long_ns, "s"),
            Err(SpiffeIdError::TooLong)
        );
        let uri = format!("spiffe://t/ns/{long_ns}/sa/s");
        assert_eq!(SpiffeId::parse(&uri), Err(SpiffeIdError::TooLong));
    }

    #[test]
    fn new_validates_names() {
        let td = TrustDomain::new("cluster.local").unwrap();
        assert_eq!(
            SpiffeId::new(&td, "a/b", "s"),
            Err(SpiffeIdError::InvalidPathChar)
        );
        assert_eq!(
            SpiffeId::new(&td, "", "s"),
            Err(SpiffeIdError::InvalidSegment)
        );
        assert_eq!(
            SpiffeId::new(&td, "a", ".."),
            Err(SpiffeIdError::InvalidSegment)
        );
    }
}
