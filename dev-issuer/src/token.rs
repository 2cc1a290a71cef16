//! Kubernetes-shaped projected service-account tokens and raw JWS helpers.

use std::time::{SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::jwks::b64;

/// The issuer URL a default kube-apiserver puts in `iss`.
pub const DEFAULT_ISSUER_URL: &str = "https://kubernetes.default.svc.cluster.local";
/// The audience minted when a [`TokenRequest`] names none: the audience of
/// development and test deployments, which configure their curator and
/// verifiers with it. Never the shared `mazu`, which verifiers refuse: a real
/// deployment's audience is its own (`mazu:` + the curator's log origin).
pub const DEV_AUDIENCE: &str = "mazu:dev";
/// The default token lifetime, in seconds.
pub const DEFAULT_LIFETIME_SECS: u64 = 3600;

/// A Kubernetes object reference inside the `kubernetes.io` claim: name and UID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's name.
    pub name: String,
    /// The object's UID (a UUID string in real clusters).
    pub uid: String,
}

impl ObjectRef {
    /// A reference with the given name and UID.
    pub fn new(name: impl Into<String>, uid: impl Into<String>) -> ObjectRef {
        ObjectRef {
            name: name.into(),
            uid: uid.into(),
        }
    }

    /// A reference whose UID is derived from `kind`, `namespace` and `name`, so that
    /// the same object gets the same UID every time (see [`derived_uid`]).
    pub fn derived(kind: &str, namespace: &str, name: impl Into<String>) -> ObjectRef {
        let name = name.into();
        let uid = derived_uid(kind, namespace, &name);
        ObjectRef { name, uid }
    }
}

/// The private `kubernetes.io` claim.
///
/// Fields are in the order Kubernetes emits them (alphabetical); `None` fields are
/// omitted, as Kubernetes does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// The pod's namespace.
    pub namespace: String,
    /// The node the pod runs on (present when the apiserver binds node info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    /// The pod the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The service account.
    pub serviceaccount: ObjectRef,
    /// When a client should warn that it is using a stale token (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<u64>,
}

/// The full claim set of a projected service-account token.
///
/// Fields are in the order Kubernetes emits them (alphabetical at every level).
/// Build one with [`crate::DevIssuer::claims`], change what a test needs, and
/// sign it with [`crate::DevIssuer::sign_claims`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Audiences (always an array, even with one element).
    pub aud: Vec<String>,
    /// Expiry (unix seconds).
    pub exp: u64,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Issuer URL.
    pub iss: String,
    /// Token ID (a random UUID v4).
    pub jti: String,
    /// The `kubernetes.io` claim.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
    /// Not before (unix seconds).
    pub nbf: u64,
    /// Subject: `system:serviceaccount:<namespace>:<service account>`.
    pub sub: String,
}

/// What to put in a token. Start from [`TokenRequest::new`] and adjust with the
/// builder methods (or set the public fields directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The pod's namespace.
    pub namespace: String,
    /// The service account (name and UID).
    pub service_account: ObjectRef,
    /// The pod the token is bound to; `None` mints a token without a pod binding.
    pub pod: Option<ObjectRef>,
    /// The node; `None` omits `kubernetes.io.node`.
    pub node: Option<ObjectRef>,
    /// Audiences; default `[DEV_AUDIENCE]` (`["mazu:dev"]`).
    pub audiences: Vec<String>,
    /// `iat` in unix seconds; `None` means now.
    pub issued_at: Option<u64>,
    /// `exp - iat` in seconds; default 3600. Kubernetes requires at least 600, this
    /// crate allows anything (combine with `issued_at` for already-expired tokens).
    pub lifetime: u64,
    /// `nbf` override; default `iat`.
    pub not_before: Option<u64>,
    /// `kubernetes.io.warnafter` override; default `exp`.
    pub warn_after: Option<u64>,
    /// `jti` override; default a random UUID v4.
    pub jti: Option<String>,
}

impl TokenRequest {
    /// A request for service account `service_account` in `namespace`, bound to a
    /// pod named `<service_account>-pod`, for audience [`DEV_AUDIENCE`], valid for an hour from
    /// now, without a node. The service account's and pod's UIDs are derived from
    /// their names ([`derived_uid`]), so repeated mints agree.
    pub fn new(namespace: impl Into<String>, service_account: impl Into<String>) -> Self {
        let namespace = namespace.into();
        let service_account = service_account.into();
        let pod = ObjectRef::derived("pod", &namespace, format!("{service_account}-pod"));
        TokenRequest {
            service_account: ObjectRef::derived("serviceaccount", &namespace, service_account),
            pod: Some(pod),
            node: None,
            audiences: vec![DEV_AUDIENCE.to_owned()],
            issued_at: None,
            lifetime: DEFAULT_LIFETIME_SECS,
            not_before: None,
            warn_after: None,
            jti: None,
            namespace,
        }
    }

    /// Sets the service account's UID.
    pub fn service_account_uid(mut self, uid: impl Into<String>) -> Self {
        self.service_account.uid = uid.into();
        self
    }

    /// Binds the token to pod `name` with `uid`.
    pub fn pod(mut self, name: impl Into<String>, uid: impl Into<String>) -> Self {
        self.pod = Some(ObjectRef::new(name, uid));
        self
    }

    /// Binds the token to pod `name` with a UID derived from the name.
    pub fn pod_named(mut self, name: impl Into<String>) -> Self {
        self.pod = Some(ObjectRef::derived("pod", &self.namespace, name));
        self
    }

    /// Mints a token without a pod binding.
    pub fn without_pod(mut self) -> Self {
        self.pod = None;
        self
    }

    /// Adds node `name` with `uid`.
    pub fn node(mut self, name: impl Into<String>, uid: impl Into<String>) -> Self {
        self.node = Some(ObjectRef::new(name, uid));
        self
    }

    /// Replaces the audiences.
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `iat` (unix seconds).
    pub fn issued_at(mut self, unix_secs: u64) -> Self {
        self.issued_at = Some(unix_secs);
        self
    }

    /// Sets the lifetime in seconds (`exp = iat + lifetime`).
    pub fn lifetime(mut self, secs: u64) -> Self {
        self.lifetime = secs;
        self
    }

    /// Sets `nbf` (unix seconds).
    pub fn not_before(mut self, unix_secs: u64) -> Self {
        self.not_before = Some(unix_secs);
        self
    }

    /// Sets `kubernetes.io.warnafter` (unix seconds).
    pub fn warn_after(mut self, unix_secs: u64) -> Self {
        self.warn_after = Some(unix_secs);
        self
    }

    /// Sets `jti`.
    pub fn jti(mut self, jti: impl Into<String>) -> Self {
        self.jti = Some(jti.into());
        self
    }

    /// The claim set for this request, issued by `issuer_url`.
    pub fn to_claims(&self, issuer_url: &str) -> Claims {
        let iat = self.issued_at.unwrap_or_else(now_unix);
        let exp = iat.saturating_add(self.lifetime);
        Claims {
            aud: self.audiences.clone(),
            exp,
            iat,
            iss: issuer_url.to_owned(),
            jti: self.jti.clone().unwrap_or_else(random_uuid_v4),
            kubernetes: KubernetesClaims {
                namespace: self.namespace.clone(),
                node: self.node.clone(),
                pod: self.pod.clone(),
                serviceaccount: self.service_account.clone(),
                warnafter: Some(self.warn_after.unwrap_or(exp)),
            },
            nbf: self.not_before.unwrap_or(iat),
            sub: format!(
                "system:serviceaccount:{}:{}",
                self.namespace, self.service_account.name
            ),
        }
    }
}

/// The current time in unix seconds (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random UUID v4 string, as Kubernetes uses for `jti` and object UIDs.
pub fn random_uuid_v4() -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    format_uuid_v4(bytes)
}

/// A UUID-shaped UID derived from SHA-256 of `kind`, `namespace` and `name`
/// (version and variant bits set as for v4), so tests get stable UIDs.
pub fn derived_uid(kind: &str, namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("mazu-dev-issuer/{kind}/{namespace}/{name}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    format_uuid_v4(bytes)
}

fn format_uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The JWS signing input for the given header and claims bytes:
/// `base64url(header) "." base64url(claims)`, bytes taken verbatim.
pub fn signing_input(header_json: &str, claims_json: &str) -> String {
    format!(
        "{}.{}",
        b64(header_json.as_bytes()),
        b64(claims_json.as_bytes())
    )
}

/// Assembles `base64url(header).base64url(claims).base64url(signature)` from any
/// three parts, for `alg: none`, tampered and mis-signed tokens. An empty
/// `signature` yields a token ending in `.`.
pub fn unsigned_token(header_json: &str, claims_json: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}",
        signing_input(header_json, claims_json),
        b64(signature)
    )
}

/// The three decoded parts of a compact JWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenParts {
    /// The header JSON bytes.
    pub header: Vec<u8>,
    /// The claims JSON bytes.
    pub claims: Vec<u8>,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// Splits and base64url-decodes a compact JWS **without verifying anything**;
/// for tests that inspect or tamper with minted tokens.
pub fn decode_unverified(token: &str) -> Result<TokenParts> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::MalformedToken("expected three dot-separated parts"));
    };
    let decode = |part: &str| {
        Base64UrlUnpadded::decode_vec(part)
            .map_err(|_| Error::MalformedToken("a part is not base64url without padding"))
    };
    Ok(TokenParts {
        header: decode(h)?,
        claims: decode(c)?,
        signature: decode(s)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let u = random_uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(derived_uid("pod", "ns", "p"), derived_uid("pod", "ns", "p"));
        assert_ne!(derived_uid("pod", "ns", "p"), derived_uid("pod", "ns", "q"));
    }

    #[test]
    fn unsigned_token_round_trips() {
        let t = unsigned_token(r#"{"alg":"none"}"#, r#"{"a":1,"a":2}"#, b"");
        assert!(t.ends_with('.'));
        let parts = decode_unverified(&t).unwrap();
        assert_eq!(parts.header, br#"{"alg":"none"}"#);
        assert_eq!(parts.claims, br#"{"a":1,"a":2}"#);
        assert!(parts.signature.is_empty());
        assert!(decode_unverified("a.b").is_err());
        assert!(decode_unverified("a.b.c.d").is_err());
    }
}
