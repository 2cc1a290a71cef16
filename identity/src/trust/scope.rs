//! Which Kubernetes namespaces a token issuer may assert.
//!
//! A cluster's own service-account issuer usually speaks for every
//! namespace; a tenant's OIDC issuer must only speak for the tenant's. A
//! scope is therefore part of every issuer's configuration, and "every
//! namespace" (`*`) is only ever what the configuration says explicitly.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Longest Kubernetes namespace name (an RFC 1123 DNS label).
pub const MAX_NAMESPACE_LEN: usize = 63;

/// The spelling of "every namespace" in configuration.
pub const ANY_NAMESPACE: &str = "*";

/// Separator of namespaces in the one-line scope spelling of command-line
/// flags (`shop+payments`). Not `,`: several `--issuer` values in one
/// environment variable are already separated by commas.
pub const SCOPE_LIST_SEPARATOR: char = '+';

/// Why a namespace scope was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// No namespace at all: the issuer could never assert anything.
    #[error("the namespace list is empty (write \"*\" for every namespace)")]
    Empty,
    /// `*` was combined with namespace names.
    #[error("\"*\" (every namespace) must be the only entry")]
    WildcardNotAlone,
    /// Not a Kubernetes namespace name (RFC 1123 label: 1 to 63 of
    /// `a-z`, `0-9`, `-`, starting and ending with a letter or digit).
    #[error("{0:?} is not a Kubernetes namespace name")]
    InvalidNamespace(String),
    /// The same namespace listed twice.
    #[error("namespace {0:?} listed twice")]
    DuplicateNamespace(String),
}

/// The namespaces an issuer's tokens may name in `kubernetes.io.namespace`.
/// A verified token outside its issuer's scope is refused
/// ([`TokenError::NamespaceOutOfScope`](crate::TokenError::NamespaceOutOfScope)).
///
/// ```
/// use mazu_identity::trust::NamespaceScope;
///
/// let tenant = NamespaceScope::parse("shop+payments")?;
/// assert!(tenant.allows("shop") && !tenant.allows("kube-system"));
/// assert!(NamespaceScope::parse("*")?.allows("kube-system"));
/// assert!(NamespaceScope::parse("").is_err());
/// # Ok::<(), mazu_identity::trust::ScopeError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceScope(Repr);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    Any,
    /// Sorted, no duplicates.
    Only(Vec<String>),
}

impl NamespaceScope {
    /// Every namespace. Only for an issuer that is the identity root of the
    /// whole cluster (the API server's own issuer).
    pub fn any() -> Self {
        Self(Repr::Any)
    }

    /// Exactly these namespaces; `["*"]` alone means [`any`](Self::any).
    pub fn namespaces<I, S>(namespaces: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut names: Vec<String> = Vec::new();
        let mut wildcard = false;
        for name in namespaces {
            let name = name.as_ref();
            if name == ANY_NAMESPACE {
                wildcard = true;
                continue;
            }
            if !is_namespace_name(name) {
                return Err(ScopeError::InvalidNamespace(name.to_string()));
            }
            match names.binary_search_by(|n| n.as_str().cmp(name)) {
                Ok(_) => return Err(ScopeError::DuplicateNamespace(name.to_string())),
                Err(at) => names.insert(at, name.to_string()),
            }
        }
        match (wildcard, names.is_empty()) {
            (true, true) => Ok(Self::any()),
            (true, false) => Err(ScopeError::WildcardNotAlone),
            (false, true) => Err(ScopeError::Empty),
            (false, false) => Ok(Self(Repr::Only(names))),
        }
    }

    /// The one-line spelling of command-line flags: `*`, or namespace names
    /// separated by [`SCOPE_LIST_SEPARATOR`] (`shop+payments`).
    pub fn parse(spec: &str) -> Result<Self, ScopeError> {
        if spec.is_empty() {
            return Err(ScopeError::Empty);
        }
        Self::namespaces(spec.split(SCOPE_LIST_SEPARATOR))
    }

    /// Whether tokens may name `namespace`.
    pub fn allows(&self, namespace: &str) -> bool {
        match &self.0 {
            Repr::Any => true,
            Repr::Only(names) => names
                .binary_search_by(|n| n.as_str().cmp(namespace))
                .is_ok(),
        }
    }

    /// Whether this is every namespace (`*`).
    pub fn is_any(&self) -> bool {
        matches!(self.0, Repr::Any)
    }

    /// The namespaces, sorted; empty for [`any`](Self::any).
    pub fn listed(&self) -> &[String] {
        match &self.0 {
            Repr::Any => &[],
            Repr::Only(names) => names,
        }
    }
}

impl core::fmt::Display for NamespaceScope {
    /// The [`parse`](Self::parse) spelling.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Repr::Any => f.write_str(ANY_NAMESPACE),
            Repr::Only(names) => {
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        write!(f, "{SCOPE_LIST_SEPARATOR}")?;
                    }
                    f.write_str(name)?;
                }
                Ok(())
            }
        }
    }
}

/// An RFC 1123 label, as Kubernetes requires of namespace names.
fn is_namespace_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAMESPACE_LEN
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_wildcards_and_refusals() {
        let scope = NamespaceScope::parse("shop+payments").unwrap();
        assert!(scope.allows("shop") && scope.allows("payments"));
        assert!(!scope.allows("kube-system") && !scope.allows("") && !scope.allows("*"));
        assert_eq!(scope.to_string(), "payments+shop");
        assert_eq!(scope.listed(), ["payments", "shop"]);
        assert!(NamespaceScope::parse("*").unwrap().is_any());
        assert_eq!(NamespaceScope::namespaces(["*"]), Ok(NamespaceScope::any()));
        for (spec, err) in [
            ("", ScopeError::Empty),
            ("*+shop", ScopeError::WildcardNotAlone),
            ("shop+", ScopeError::InvalidNamespace(String::new())),
            ("Shop", ScopeError::InvalidNamespace("Shop".into())),
            ("-shop", ScopeError::InvalidNamespace("-shop".into())),
            ("shop-", ScopeError::InvalidNamespace("shop-".into())),
            ("sh op", ScopeError::InvalidNamespace("sh op".into())),
            (
                "shop,cart",
                ScopeError::InvalidNamespace("shop,cart".into()),
            ),
            ("shop+shop", ScopeError::DuplicateNamespace("shop".into())),
        ] {
            assert_eq!(NamespaceScope::parse(spec), Err(err), "{spec:?}");
        }
        let long = "a".repeat(MAX_NAMESPACE_LEN + 1);
        assert!(NamespaceScope::parse(&long).is_err());
        assert!(NamespaceScope::parse(&long[1..]).is_ok());
        assert_eq!(
            NamespaceScope::namespaces(Vec::<&str>::new()),
            Err(ScopeError::Empty)
        );
    }
}
