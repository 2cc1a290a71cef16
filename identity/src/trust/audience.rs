//! The token audience: what makes a token useless outside one deployment.
//!
//! A token travels inside the workload certificate and is written to the
//! curator's public log, so everyone who talks to the workload, and everyone
//! who reads the log, sees it. If two deployments accepted the same
//! audience, a token seen in one could be registered (with the thief's own
//! key) at the other. The audience is therefore required configuration, it
//! must be unique to the deployment, and the one value every deployment used
//! to share, `mazu`, is refused.
//!
//! The recommended value is [`audience_for_log`]: `mazu:` followed by the
//! curator's checkpoint origin (by default `mazu-curator/<first 16 hex
//! digits of the CRS digest>`), which names exactly one log.

use alloc::format;
use alloc::string::{String, ToString};

/// The audience every Mazu deployment used to share. Refused (in any case
/// spelling, and as the bare prefix `mazu:`).
pub const SHARED_AUDIENCE: &str = "mazu";

/// Prefix of the recommended audience, [`audience_for_log`].
pub const AUDIENCE_PREFIX: &str = "mazu:";

/// Longest accepted audience, bytes.
pub const MAX_AUDIENCE_LEN: usize = 1024;

/// Why an audience was refused. Wrapped by
/// [`ConfigError::Audience`](super::ConfigError::Audience).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudienceError {
    /// No audience configured: it is required, there is no default.
    #[error(
        "no audience configured: it is required and must be unique to this deployment \
         (recommended: \"mazu:\" followed by the curator's checkpoint origin)"
    )]
    Missing,
    /// Empty.
    #[error("audience must not be empty")]
    Empty,
    /// Longer than [`MAX_AUDIENCE_LEN`].
    #[error("audience is longer than {MAX_AUDIENCE_LEN} bytes")]
    TooLong,
    /// Not printable ASCII without spaces.
    #[error("audience {0:?} must be printable ASCII without spaces")]
    NotPrintable(String),
    /// The audience every deployment used to share (`mazu`, `mazu:`).
    #[error(
        "audience {0:?} is shared by every Mazu deployment: a token seen in another \
         deployment's log or certificates could be registered here; use a \
         deployment-unique audience, e.g. \"mazu:\" followed by the curator's \
         checkpoint origin (\"mazu:mazu-curator/<first 16 hex digits of the CRS digest>\")"
    )]
    Shared(String),
    /// The audience is a configured issuer's URL, which is the audience the
    /// Kubernetes API server accepts by default: a token in a certificate
    /// would be an API credential.
    #[error(
        "audience {0:?} is an issuer URL, the Kubernetes API server's default audience: \
         tokens shown to every peer would be API server credentials"
    )]
    IsIssuer(String),
}

/// The recommended audience for the deployment whose curator log has the
/// checkpoint origin `log_origin`: `mazu:<log_origin>`.
///
/// ```
/// use mazu_identity::trust::{audience_for_log, check_audience};
///
/// let audience = audience_for_log("mazu-curator/0123456789abcdef");
/// assert_eq!(audience, "mazu:mazu-curator/0123456789abcdef");
/// assert!(check_audience(&audience).is_ok());
/// assert!(check_audience("mazu").is_err());
/// ```
pub fn audience_for_log(log_origin: &str) -> String {
    format!("{AUDIENCE_PREFIX}{log_origin}")
}

/// Checks that `audience` can be a deployment's audience: non-empty, at most
/// [`MAX_AUDIENCE_LEN`] bytes of printable ASCII without spaces, and not the
/// shared `mazu` (nor `mazu:` with nothing after it, in any case spelling).
/// Whether it is really unique is the operator's part; [`audience_for_log`]
/// gives a value that is.
pub fn check_audience(audience: &str) -> Result<(), AudienceError> {
    if audience.is_empty() {
        return Err(AudienceError::Empty);
    }
    if audience.len() > MAX_AUDIENCE_LEN {
        return Err(AudienceError::TooLong);
    }
    if !audience.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AudienceError::NotPrintable(audience.to_string()));
    }
    if audience.eq_ignore_ascii_case(SHARED_AUDIENCE)
        || audience.eq_ignore_ascii_case(AUDIENCE_PREFIX)
    {
        return Err(AudienceError::Shared(audience.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_audience_is_refused_and_unique_ones_pass() {
        for shared in ["mazu", "MAZU", "Mazu", "mazu:", "MAZU:"] {
            assert_eq!(
                check_audience(shared),
                Err(AudienceError::Shared(shared.into()))
            );
        }
        assert_eq!(check_audience(""), Err(AudienceError::Empty));
        assert!(matches!(
            check_audience("mazu prod"),
            Err(AudienceError::NotPrintable(_))
        ));
        assert_eq!(
            check_audience(&"a".repeat(MAX_AUDIENCE_LEN + 1)),
            Err(AudienceError::TooLong)
        );
        for ok in [
            "mazu:mazu-curator/0123456789abcdef",
            "mazu:prod-eu",
            "https://mazu.example/prod",
        ] {
            assert_eq!(check_audience(ok), Ok(()), "{ok}");
        }
        assert!(
            AudienceError::Shared("mazu".into())
                .to_string()
                .contains("deployment-unique")
        );
    }
}
