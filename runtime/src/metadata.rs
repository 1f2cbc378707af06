//! Decoding what a module says about itself (ABI 2's postcard `RuleMetadata`, ABI 3's postcard
//! `LoadReply`) field by field, exactly as the derived decoders would, so that a refusal names the
//! field that does not decode (`rule 3: field `version` does not decode: ...`) rather than only
//! saying that something did not.

use std::borrow::Cow;

use rulebox_sdk::{EventKinds, LoadReply, PackMetadata, RuleMetadata, Severity};
use serde::Deserialize;

use crate::pack::MAX_PACK_RULES;

/// Decodes one field of type `T` from the front of `bytes`; the error names `field`.
fn field<'a, T: Deserialize<'a>>(bytes: &mut &'a [u8], field: &str) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|e| format!("field `{field}` does not decode: {e}"))?;
    *bytes = rest;
    Ok(value)
}

fn text<'a>(bytes: &mut &'a [u8], name: &str) -> Result<Cow<'a, str>, String> {
    field::<&str>(bytes, name).map(Cow::Borrowed)
}

/// A `RuleMetadata` from the front of `bytes`, and what follows it.
pub(crate) fn decode_rule(mut bytes: &[u8]) -> Result<(RuleMetadata<'_>, &[u8]), String> {
    let b = &mut bytes;
    let meta = RuleMetadata {
        schema_version: field(b, "schema_version")?,
        id: text(b, "id")?,
        name: text(b, "name")?,
        version: text(b, "version")?,
        severity: field::<Severity>(b, "severity")?,
        subscriptions: field::<EventKinds>(b, "subscriptions")?,
    };
    Ok((meta, bytes))
}

/// A `LoadReply` from the front of `bytes`, and what follows it.
pub(crate) fn decode_reply(mut bytes: &[u8]) -> Result<(LoadReply<'_>, &[u8]), String> {
    let b = &mut bytes;
    let reply = match field::<u32>(b, "reply kind")? {
        0 => {
            let schema_version = field(b, "schema_version")?;
            let id = text(b, "id")?;
            let name = text(b, "name")?;
            let version = text(b, "version")?;
            let count = field::<usize>(b, "rules (their count)")?;
            if count > MAX_PACK_RULES {
                return Err(format!(
                    "the pack declares {count} rules; at most {MAX_PACK_RULES}"
                ));
            }
            let mut rules = Vec::with_capacity(count);
            for i in 0..count {
                let (rule, rest) = decode_rule(b).map_err(|e| format!("rule {i}: {e}"))?;
                *b = rest;
                rules.push(rule);
            }
            LoadReply::Loaded(PackMetadata {
                schema_version,
                id,
                name,
                version,
                rules,
            })
        }
        1 => LoadReply::Refused(text(b, "refusal")?),
        other => {
            return Err(format!(
                "reply kind {other} is neither 0 (loaded) nor 1 (refused)"
            ));
        }
    };
    Ok((reply, bytes))
}

#[cfg(test)]
mod tests {
    use rulebox_sdk::EventKind;

    use super::*;

    fn rule(id: &str) -> RuleMetadata<'static> {
        RuleMetadata {
            schema_version: 2,
            id: id.to_owned().into(),
            name: "name é".into(),
            version: "1.2.3".into(),
            severity: Severity::Critical,
            subscriptions: EventKinds::of(&[EventKind::ProcessStart, EventKind::DnsQuery]),
        }
    }

    #[test]
    fn field_by_field_decoding_agrees_with_the_derived_decoder() {
        let mut bytes = postcard::to_allocvec(&rule("a")).unwrap();
        bytes.extend_from_slice(b"tail");
        let (meta, rest) = decode_rule(&bytes).unwrap();
        assert_eq!(
            (meta, rest),
            postcard::take_from_bytes::<RuleMetadata<'_>>(&bytes).unwrap()
        );
        let reply = LoadReply::Loaded(PackMetadata {
            schema_version: 2,
            id: "p".into(),
            name: "P".into(),
            version: "9".into(),
            rules: (0..40).map(|i| rule(&format!("r{i}"))).collect(),
        });
        let bytes = postcard::to_allocvec(&reply).unwrap();
        assert_eq!(decode_reply(&bytes).unwrap(), (reply, &[][..]));
        let refused = postcard::to_allocvec(&LoadReply::Refused("no".into())).unwrap();
        assert_eq!(
            decode_reply(&refused).unwrap().0,
            LoadReply::Refused("no".into())
        );
    }

    #[test]
    fn a_decode_error_names_the_field_and_the_rule() {
        let bytes = postcard::to_allocvec(&rule("a")).unwrap();
        // schema version (1 byte), id (1 + 1), name (1 + 7): cut inside the version.
        let err = decode_rule(&bytes[..12]).unwrap_err();
        assert!(err.starts_with("field `version` does not decode"), "{err}");
        let mut bad = bytes.clone();
        bad[2] = 0xff; // the id is no longer UTF-8
        let err = decode_rule(&bad).unwrap_err();
        assert!(err.starts_with("field `id` does not decode"), "{err}");
        let reply = LoadReply::Loaded(PackMetadata {
            schema_version: 2,
            id: "p".into(),
            name: "P".into(),
            version: "9".into(),
            rules: vec![rule("a"), rule("b")],
        });
        let bytes = postcard::to_allocvec(&reply).unwrap();
        let err = decode_reply(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.starts_with("rule 1: field `subscriptions`"), "{err}");
        let err = decode_reply(&[7]).unwrap_err();
        assert!(err.contains("reply kind 7"), "{err}");
        let err =
            decode_reply(&[0, 2, 1, b'p', 1, b'P', 1, b'9', 0xff, 0xff, 0xff, 0x7f]).unwrap_err();
        assert!(err.contains("at most 16384"), "{err}");
    }
}
