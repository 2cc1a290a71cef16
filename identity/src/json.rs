//! Strict JSON parsing: serde_json plus a duplicate-key check.
//!
//! serde_json keeps the *last* value of a duplicated object key (or errors only
//! for duplicated fields that a derived struct knows). Two parsers that resolve
//! `{"sub":"a","sub":"b"}` differently is a classic token-confusion bug, so every
//! JSON document that Mazu trusts (JWT header, JWT claims, JWKS) is first walked
//! once by a visitor that rejects a repeated key in any object at any depth.
//! Keys are compared after unescaping, so `"exp"` and `"\u0065xp"` collide.

use alloc::collections::BTreeSet;
use alloc::string::String;
use core::cell::Cell;
use core::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
};

/// Why a JSON document was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON (syntax error, truncated, trailing characters, invalid UTF-8, too deep).
    Syntax,
    /// An object somewhere in the document repeats a key.
    DuplicateKey,
    /// Valid JSON, but a field has the wrong type or shape for the target type.
    Type,
}

/// Parses `bytes` as exactly one JSON value of type `T`, refusing duplicate keys.
pub(crate) fn from_slice_strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    check_no_duplicate_keys(bytes)?;
    serde_json::from_slice::<T>(bytes).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => JsonError::Type,
        _ => JsonError::Syntax,
    })
}

/// Walks the whole document once; `Err(DuplicateKey)` if any object repeats a key.
pub(crate) fn check_no_duplicate_keys(bytes: &[u8]) -> Result<(), JsonError> {
    let found_duplicate = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let walked = NoDuplicates {
        found_duplicate: &found_duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    match walked {
        Ok(()) => Ok(()),
        // The visitor can only report through serde_json's opaque error type, so
        // it raises a flag on the side to tell a duplicate from a syntax error.
        Err(_) if found_duplicate.get() => Err(JsonError::DuplicateKey),
        Err(_) => Err(JsonError::Syntax),
    }
}

/// A seed/visitor that accepts any JSON value and fails on a repeated key.
#[derive(Clone, Copy)]
struct NoDuplicates<'f> {
    found_duplicate: &'f Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for NoDuplicates<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                self.found_duplicate.set(true);
                return Err(de::Error::custom("duplicate object key"));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn accepts_plain_documents() {
        assert_eq!(
            check_no_duplicate_keys(br#"{"a":1,"b":[{"a":2},{"a":3}],"c":{"a":null}}"#),
            Ok(())
        );
        assert_eq!(
            check_no_duplicate_keys(b" [1, 2.5, -3, true, \"x\"] "),
            Ok(())
        );
    }

    #[test]
    fn finds_duplicates_at_any_depth() {
        assert_eq!(
            check_no_duplicate_keys(br#"{"a":1,"a":1}"#),
            Err(JsonError::DuplicateKey)
        );
        assert_eq!(
            check_no_duplicate_keys(br#"{"x":{"y":{"a":1,"a":2}}}"#),
            Err(JsonError::DuplicateKey)
        );
        assert_eq!(
            check_no_duplicate_keys(br#"[{"ok":1},{"a":1,"b":2,"a":3}]"#),
            Err(JsonError::DuplicateKey)
        );
        // Escaped spelling of the same key.
        assert_eq!(
            check_no_duplicate_keys(br#"{"exp":1,"\u0065xp":2}"#),
            Err(JsonError::DuplicateKey)
        );
    }

    #[test]
    fn tells_syntax_from_type_errors() {
        assert_eq!(
            check_no_duplicate_keys(br#"{"a":1"#),
            Err(JsonError::Syntax)
        );
        assert_eq!(
            check_no_duplicate_keys(br#"{"a":1} x"#),
            Err(JsonError::Syntax)
        );
        assert_eq!(check_no_duplicate_keys(b"\xff"), Err(JsonError::Syntax));
        assert_eq!(
            from_slice_strict::<Vec<u8>>(br#"{"a":1}"#),
            Err(JsonError::Type)
        );
        assert_eq!(
            from_slice_strict::<Vec<u8>>(b"[1,2]"),
            Ok(alloc::vec![1, 2])
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut doc = Vec::new();
        doc.resize(10_000, b'[');
        doc.resize(20_000, b']');
        assert_eq!(check_no_duplicate_keys(&doc), Err(JsonError::Syntax));
    }
}
