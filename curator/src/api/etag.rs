//! Entity tags and conditional requests: every versioned resource carries
//! `ETag: "<version>"`, and a request with a matching `If-None-Match` gets
//! `304 Not Modified` with no body, decided before anything is encoded.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The quoted (strong) entity tag for `tag`.
pub fn etag(tag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{tag}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// Whether `If-None-Match` in `headers` matches `tag` (weak comparison, as
/// RFC 9110 prescribes for `If-None-Match`: a `W/` prefix is ignored; `*`
/// matches anything).
pub fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|item| {
            if item == "*" {
                return true;
            }
            let item = item.strip_prefix("W/").unwrap_or(item);
            item.strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .is_some_and(|opaque| opaque == tag)
        })
}

/// `304 Not Modified` with the entity tag.
pub fn not_modified(tag: &str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    response.headers_mut().insert(header::ETAG, etag(tag));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn matching() {
        assert!(if_none_match(&headers(&["\"5\""]), "5"));
        assert!(if_none_match(&headers(&["W/\"5\""]), "5"));
        assert!(if_none_match(&headers(&["\"4\", \"5\""]), "5"));
        assert!(if_none_match(&headers(&["\"4\"", "\"5\""]), "5"));
        assert!(if_none_match(&headers(&["*"]), "5"));
        assert!(!if_none_match(&headers(&["\"4\""]), "5"));
        assert!(!if_none_match(&headers(&["5"]), "5"));
        assert!(!if_none_match(&headers(&["\"55\""]), "5"));
        assert!(!if_none_match(&HeaderMap::new(), "5"));
        assert_eq!(etag("7"), "\"7\"");
    }
}
