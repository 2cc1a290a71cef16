//! The claim set of a Kubernetes projected service-account token.
//!
//! Shape (Kubernetes 1.30+; `node` and `jti` are absent on older clusters):
//!
//! ```json
//! {"aud":["mazu"],"exp":1767229200,"iat":1767225600,"iss":"https://kubernetes.default.svc.cluster.local",
//!  "jti":"0c4c3b0a-...","kubernetes.io":{"namespace":"default","node":{"name":"node-1","uid":"..."},
//!  "pod":{"name":"web-0","uid":"..."},"serviceaccount":{"name":"web","uid":"..."},"warnafter":1767229200},
//!  "nbf":1767225600,"sub":"system:serviceaccount:default:web"}
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use serde::Deserialize;

use super::error::{TokenError, TokenPart};
use crate::json::{self, JsonError};

/// A Kubernetes object reference inside the `kubernetes.io` claim.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectRef {
    /// Object name.
    pub name: String,
    /// Object UID.
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubernetesClaims {
    /// The pod's namespace.
    pub namespace: String,
    /// The service account the token was issued for.
    pub service_account: ObjectRef,
    /// The pod the token is bound to (Mazu requires a pod-bound token).
    pub pod: ObjectRef,
    /// The node the pod runs on, when the cluster records it.
    pub node: Option<ObjectRef>,
    /// When kubelet starts warning that the token should be refreshed.
    pub warn_after: Option<u64>,
}

/// The claims of a service-account token, after the required ones were found.
///
/// Having a `Claims` value does not mean the token was verified: only
/// [`VerifiedToken`](super::VerifiedToken) says that.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claims {
    /// `iss`.
    pub issuer: String,
    /// `sub`, always `system:serviceaccount:<namespace>:<service account>`.
    pub subject: String,
    /// `aud`, normalised to a list (RFC 7519 allows a single string).
    pub audiences: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
    /// `iat`, Unix seconds.
    pub issued_at: u64,
    /// `nbf`, Unix seconds, when present.
    pub not_before: Option<u64>,
    /// `jti`, when present.
    pub jwt_id: Option<String>,
    /// `kubernetes.io`.
    pub kubernetes: KubernetesClaims,
}

/// `aud` is "a string or an array of strings" (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawAudience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawRef {
    name: Option<String>,
    uid: Option<String>,
}

#[derive(Deserialize)]
struct RawKubernetes {
    namespace: Option<String>,
    serviceaccount: Option<RawRef>,
    pod: Option<RawRef>,
    node: Option<RawRef>,
    warnafter: Option<u64>,
}

/// Every field optional so that a missing claim gets its own named reason
/// instead of a generic deserialization error. Numeric dates must be
/// non-negative integers: Kubernetes never writes fractions.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<RawAudience>,
    exp: Option<u64>,
    iat: Option<u64>,
    nbf: Option<u64>,
    jti: Option<String>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<RawKubernetes>,
}

/// A required, non-empty string claim.
fn required(value: Option<String>, name: &'static str) -> Result<String, TokenError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(TokenError::MissingClaim(name)),
    }
}

fn required_ref(
    value: Option<RawRef>,
    name: &'static str,
    uid: &'static str,
    whole: &'static str,
) -> Result<ObjectRef, TokenError> {
    let raw = value.ok_or(TokenError::MissingClaim(whole))?;
    Ok(ObjectRef {
        name: required(raw.name, name)?,
        uid: required(raw.uid, uid)?,
    })
}

impl Claims {
    /// Parses decoded claims JSON and checks that every claim Mazu needs is
    /// present and that `sub` agrees with the `kubernetes.io` claims. Issuer,
    /// audience and times are policy checks made by the verifier.
    pub(crate) fn parse(json_bytes: &[u8]) -> Result<Self, TokenError> {
        let raw: RawClaims = json::from_slice_strict(json_bytes).map_err(|e| match e {
            JsonError::Syntax => TokenError::MalformedJson(TokenPart::Payload),
            JsonError::DuplicateKey => TokenError::DuplicateJsonKey(TokenPart::Payload),
            JsonError::Type => TokenError::MalformedClaims,
        })?;
        let issuer = required(raw.iss, "iss")?;
        let subject = required(raw.sub, "sub")?;
        let audiences = match raw.aud.ok_or(TokenError::MissingClaim("aud"))? {
            RawAudience::One(aud) => vec![aud],
            RawAudience::Many(auds) => auds,
        };
        let expires_at = raw.exp.ok_or(TokenError::MissingClaim("exp"))?;
        let issued_at = raw.iat.ok_or(TokenError::MissingClaim("iat"))?;
        let k8s = raw
            .kubernetes
            .ok_or(TokenError::MissingClaim("kubernetes.io"))?;
        let namespace = required(k8s.namespace, "kubernetes.io.namespace")?;
        let service_account = required_ref(
            k8s.serviceaccount,
            "kubernetes.io.serviceaccount.name",
            "kubernetes.io.serviceaccount.uid",
            "kubernetes.io.serviceaccount",
        )?;
        let pod = required_ref(
            k8s.pod,
            "kubernetes.io.pod.name",
            "kubernetes.io.pod.uid",
            "kubernetes.io.pod",
        )?;
        // The node is informational; an incomplete one is ignored rather than
        // trusted halfway.
        let node = k8s.node.and_then(|n| match (n.name, n.uid) {
            (Some(name), Some(uid)) => Some(ObjectRef { name, uid }),
            _ => None,
        });
        let expected_subject =
            format!("system:serviceaccount:{namespace}:{}", service_account.name);
        if subject != expected_subject {
            return Err(TokenError::SubjectMismatch);
        }
        Ok(Self {
            issuer,
            subject,
            audiences,
            expires_at,
            issued_at,
            not_before: raw.nbf,
            jwt_id: raw.jti,
            kubernetes: KubernetesClaims {
                namespace,
                service_account,
                pod,
                node,
                warn_after: k8s.warnafter,
            },
        })
    }

    /// Audience policy: Mazu's audience must be present and must be the only one.
    pub(crate) fn check_audience(&self, audience: &str) -> Result<(), TokenError> {
        if !self.audiences.iter().any(|a| a == audience) {
            return Err(TokenError::WrongAudience);
        }
        if self.audiences.iter().any(|a| a != audience) {
            return Err(TokenError::ExtraAudience);
        }
        Ok(())
    }

    /// Time policy, re-run on every cache hit: valid while
    /// `nbf - skew <= now < exp + skew` and `iat <= now + skew`.
    pub fn check_times(&self, now_unix: u64, clock_skew_secs: u64) -> Result<(), TokenError> {
        if now_unix >= self.expires_at.saturating_add(clock_skew_secs) {
            return Err(TokenError::Expired);
        }
        let latest_acceptable = now_unix.saturating_add(clock_skew_secs);
        if self.not_before.is_some_and(|nbf| nbf > latest_acceptable) {
            return Err(TokenError::NotYetValid);
        }
        if self.issued_at > latest_acceptable {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"aud":["mazu"],"exp":2000,"iat":1000,"iss":"https://issuer","jti":"j",
        "kubernetes.io":{"namespace":"default","node":{"name":"n","uid":"nu"},
        "pod":{"name":"p","uid":"pu"},"serviceaccount":{"name":"web","uid":"su"},"warnafter":1900},
        "nbf":1000,"sub":"system:serviceaccount:default:web"}"#;

    fn with(from: &str, to: &str) -> Result<Claims, TokenError> {
        assert!(GOOD.contains(from), "{from}");
        Claims::parse(GOOD.replacen(from, to, 1).as_bytes())
    }

    #[test]
    fn parses_kubernetes_shape() {
        let c = Claims::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(c.audiences, vec![String::from("mazu")]);
        assert_eq!(c.kubernetes.namespace, "default");
        assert_eq!(c.kubernetes.service_account.name, "web");
        assert_eq!(c.kubernetes.pod.uid, "pu");
        assert_eq!(
            c.kubernetes.node.as_ref().map(|n| n.name.as_str()),
            Some("n")
        );
        assert_eq!(c.kubernetes.warn_after, Some(1900));
        assert_eq!(
            (c.expires_at, c.issued_at, c.not_before),
            (2000, 1000, Some(1000))
        );
        // A single-string audience (RFC 7519) and an absent node/jti/nbf.
        let c = with(r#""aud":["mazu"]"#, r#""aud":"mazu""#).unwrap();
        assert_eq!(c.audiences, vec![String::from("mazu")]);
        assert!(
            with(r#""node":{"name":"n","uid":"nu"},"#, "")
                .unwrap()
                .kubernetes
                .node
                .is_none()
        );
        assert!(with(r#""nbf":1000,"#, "").unwrap().not_before.is_none());
    }

    #[test]
    fn names_missing_claims() {
        let cases = [
            (r#""iss":"https://issuer","#, "iss"),
            (r#","sub":"system:serviceaccount:default:web""#, "sub"),
            (r#""aud":["mazu"],"#, "aud"),
            (r#""exp":2000,"#, "exp"),
            (r#""iat":1000,"#, "iat"),
            (r#""namespace":"default","#, "kubernetes.io.namespace"),
            (r#""pod":{"name":"p","uid":"pu"},"#, "kubernetes.io.pod"),
            (r#""name":"p","#, "kubernetes.io.pod.name"),
            (r#","uid":"pu""#, "kubernetes.io.pod.uid"),
            (
                r#","serviceaccount":{"name":"web","uid":"su"}"#,
                "kubernetes.io.serviceaccount",
            ),
            (r#""name":"web","#, "kubernetes.io.serviceaccount.name"),
            (r#","uid":"su""#, "kubernetes.io.serviceaccount.uid"),
        ];
        for (from, claim) in cases {
            assert_eq!(
                with(from, ""),
                Err(TokenError::MissingClaim(claim)),
                "{claim}"
            );
        }
        assert_eq!(
            with(r#""iss":"https://issuer""#, r#""iss":"""#),
            Err(TokenError::MissingClaim("iss"))
        );
        assert_eq!(
            with(r#""iss":"https://issuer""#, r#""iss":null"#),
            Err(TokenError::MissingClaim("iss"))
        );
        let no_k8s = r#"{"aud":"mazu","exp":2,"iat":1,"iss":"i","sub":"s"}"#;
        assert_eq!(
            Claims::parse(no_k8s.as_bytes()),
            Err(TokenError::MissingClaim("kubernetes.io"))
        );
    }

    #[test]
    fn refuses_wrong_types() {
        for (from, to) in [
            (r#""exp":2000"#, r#""exp":"2000""#),
            (r#""exp":2000"#, r#""exp":2000.5"#),
            (r#""exp":2000"#, r#""exp":-1"#),
            (r#""iat":1000"#, r#""iat":1e3"#),
            (r#""aud":["mazu"]"#, r#""aud":[1]"#),
            (r#""aud":["mazu"]"#, r#""aud":{"a":"mazu"}"#),
            (r#""namespace":"default""#, r#""namespace":["default"]"#),
            (r#""exp":2000"#, r#""exp":18446744073709551616"#),
        ] {
            assert_eq!(with(from, to), Err(TokenError::MalformedClaims), "{to}");
        }
        assert_eq!(Claims::parse(b"[]"), Err(TokenError::MalformedClaims));
        assert_eq!(
            Claims::parse(b"{"),
            Err(TokenError::MalformedJson(TokenPart::Payload))
        );
        assert_eq!(
            with(r#""iat":1000"#, r#""iat":1000,"iat":1000"#),
            Err(TokenError::DuplicateJsonKey(TokenPart::Payload))
        );
    }

    #[test]
    fn checks_subject() {
        let wrong = r#""sub":"system:serviceaccount:default:other""#;
        assert_eq!(
            with(r#""sub":"system:serviceaccount:default:web""#, wrong),
            Err(TokenError::SubjectMismatch)
        );
        let wrong = r#""sub":"system:serviceaccount:kube-system:web""#;
        assert_eq!(
            with(r#""sub":"system:serviceaccount:default:web""#, wrong),
            Err(TokenError::SubjectMismatch)
        );
    }

    #[test]
    fn audience_policy() {
        let c = with(
            r#""aud":["mazu"]"#,
            r#""aud":["mazu","https://kubernetes.default.svc"]"#,
        )
        .unwrap();
        assert_eq!(c.check_audience("mazu"), Err(TokenError::ExtraAudience));
        let c = with(
            r#""aud":["mazu"]"#,
            r#""aud":["https://kubernetes.default.svc"]"#,
        )
        .unwrap();
        assert_eq!(c.check_audience("mazu"), Err(TokenError::WrongAudience));
        let c = with(r#""aud":["mazu"]"#, r#""aud":[]"#).unwrap();
        assert_eq!(c.check_audience("mazu"), Err(TokenError::WrongAudience));
        let c = Claims::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(c.check_audience("mazu"), Ok(()));
    }

    #[test]
    fn time_window_edges() {
        let c = Claims::parse(GOOD.as_bytes()).unwrap(); // iat = nbf = 1000, exp = 2000
        assert_eq!(c.check_times(1500, 0), Ok(()));
        assert_eq!(c.check_times(1999, 0), Ok(()));
        assert_eq!(c.check_times(2000, 0), Err(TokenError::Expired));
        assert_eq!(c.check_times(2059, 60), Ok(()));
        assert_eq!(c.check_times(2060, 60), Err(TokenError::Expired));
        assert_eq!(c.check_times(999, 0), Err(TokenError::NotYetValid));
        assert_eq!(c.check_times(940, 60), Ok(()));
        assert_eq!(c.check_times(939, 60), Err(TokenError::NotYetValid));
        let c = with(r#""nbf":1000"#, r#""nbf":900"#).unwrap();
        assert_eq!(c.check_times(939, 60), Err(TokenError::IssuedInFuture));
        assert_eq!(c.check_times(940, 60), Ok(()));
        // No overflow at the end of time.
        let c = with(r#""exp":2000"#, r#""exp":18446744073709551615"#).unwrap();
        assert_eq!(c.check_times(u64::MAX - 1, u64::MAX), Ok(()));
    }
}
