//! A DNS query for a long, random-looking name: domain-generation algorithms (DGA) and DNS
//! tunnelling (data encoded in base32 or hex labels) both produce them; people rarely do.
//!
//! # The heuristic
//!
//! The query name is split into labels at `.`, and each label into segments at `-` and `_` (long
//! human-made names are hyphenated words, as in `my-load-balancer-1234567890`; generated ones are
//! not). A segment is *random-looking* when all of these hold:
//!
//! 1. it is at least [`MIN_LEN`] (25) characters long;
//! 2. its Shannon entropy is at least [`MIN_ENTROPY_MILLIBITS`] (3.5 bits per character), computed
//!    over the ASCII-case-folded bytes: `H = log2(n) - (1/n) Σ c·log2(c)` for the counts `c` of
//!    each distinct byte in a segment of `n` bytes. `log2` is computed in 16.16 fixed point with
//!    integer arithmetic only (normalise, then square-and-compare for each fraction bit), so the rule
//!    needs neither `std` nor floating point. English-like text sits around 3.3–3.9 bits, random
//!    base32/base36 around 4.0–4.4, random hex around 3.6–3.9 (its alphabet has only 16 symbols),
//!    and a repeated character at 0;
//! 3. and it does not read like words: either fewer than a quarter of its letters are vowels
//!    (`aeiouy`; English text has about 40%, random letters about 23%) or at least 30% of its
//!    characters are digits (random hex has about 60%, base36 about 28% and few vowels).
//!
//! One detection is reported per query, for the first random-looking segment.
//!
//! Only the first [`MAX_NAME`] (253) bytes of the name are looked at: no DNS name is longer, and a
//! longer one (a crafted event) must not cost more fuel than a real one. Without this bound, a
//! 256 KiB query name ran the rule out of fuel; `rulebox validate`'s boundary events found it.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use rulebox_sdk::prelude::*;

/// The shortest segment considered.
pub const MIN_LEN: usize = 25;
/// The longest DNS name (RFC 1035: 255 bytes on the wire, 253 as text); bytes past it are ignored.
pub const MAX_NAME: usize = 253;
/// The least entropy, in thousandths of a bit per character, of a random-looking segment.
pub const MIN_ENTROPY_MILLIBITS: u32 = 3_500;

/// Fires on DNS queries for long random-looking names.
#[derive(Default)]
pub struct DnsRandomName;

impl Rule for DnsRandomName {
    const META: RuleMeta = RuleMeta {
        id: "dns-random-looking-name",
        name: "DNS query for a long random-looking name",
        version: "1.0.0",
        severity: Severity::Medium,
        events: &[EventKind::DnsQuery],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        let Some(q) = event.dns() else {
            return;
        };
        let name = q.query_name();
        let mut end = name.len().min(MAX_NAME);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let Some((segment, score)) = name[..end]
            .split('.')
            .flat_map(|label| label.split(['-', '_']))
            .find_map(|s| score(s).filter(Score::is_random).map(|sc| (s, sc)))
        else {
            return;
        };
        out.detect("DNS query for a long random-looking name")
            .field("QueryName", name)
            .field("Image", q.image())
            .field("Label", segment)
            .field(
                "Entropy",
                &format!(
                    "{}.{:02}",
                    score.entropy_millibits / 1000,
                    score.entropy_millibits % 1000 / 10
                ),
            )
            .field("Length", &format!("{}", score.len));
    }
}

/// The measurements of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    /// Length in bytes.
    pub len: usize,
    /// Shannon entropy in thousandths of a bit per character.
    pub entropy_millibits: u32,
    /// ASCII letters.
    pub letters: usize,
    /// Of which vowels (`aeiouy`).
    pub vowels: usize,
    /// ASCII digits.
    pub digits: usize,
}

impl Score {
    /// Whether the measurements say random-looking (see the crate docs).
    pub fn is_random(&self) -> bool {
        self.len >= MIN_LEN
            && self.entropy_millibits >= MIN_ENTROPY_MILLIBITS
            && (self.vowels * 4 < self.letters || self.digits * 10 >= self.len * 3)
    }
}

/// Measures `segment`; `None` for one shorter than [`MIN_LEN`] (not worth the work).
pub fn score(segment: &str) -> Option<Score> {
    let bytes = segment.as_bytes();
    if bytes.len() < MIN_LEN {
        return None;
    }
    let mut counts = [0u32; 256];
    let (mut letters, mut vowels, mut digits) = (0, 0, 0);
    for &b in bytes {
        let b = b.to_ascii_lowercase();
        counts[usize::from(b)] += 1;
        if b.is_ascii_lowercase() {
            letters += 1;
            if matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y') {
                vowels += 1;
            }
        } else if b.is_ascii_digit() {
            digits += 1;
        }
    }
    let n = u32::try_from(bytes.len()).ok()?;
    // H = log2(n) - (Σ c·log2 c) / n, in 16.16 fixed point.
    let sum: u64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| u64::from(c) * log2_q16(c))
        .sum();
    let h_q16 = log2_q16(n).saturating_sub(sum / u64::from(n));
    let entropy_millibits = u32::try_from((h_q16 * 1000) >> 16).unwrap_or(u32::MAX);
    Some(Score {
        len: bytes.len(),
        entropy_millibits,
        letters,
        vowels,
        digits,
    })
}

/// `log2(x)` in 16.16 fixed point, for `x >= 1` (`0` gives `0`), with integer arithmetic only.
pub fn log2_q16(x: u32) -> u64 {
    if x == 0 {
        return 0;
    }
    let int = 31 - x.leading_zeros();
    // The mantissa x / 2^int in [1, 2), as a 1.31 fixed-point number in [2^31, 2^32).
    let mut m = u64::from(x) << (31 - int);
    let mut frac = 0u64;
    for bit in (0..16).rev() {
        // Squaring doubles the logarithm; m < 2^32, so m² < 2^64 does not overflow.
        m = (m * m) >> 31;
        if m >= 1 << 32 {
            m >>= 1;
            frac |= 1 << bit;
        }
    }
    (u64::from(int) << 16) | frac
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(DnsRandomName);

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Event<'static> {
        let mut q = DnsQuery::default();
        q.query_name = name.to_owned().into();
        q.image = "C:\\Users\\bob\\AppData\\Local\\Temp\\svc.exe".into();
        Event::new(EventData::DnsQuery(q))
    }

    fn fires(name: &str) -> bool {
        let found = run_native(&mut DnsRandomName, &query(name));
        assert!(found.len() <= 1);
        if let Some(d) = found.first() {
            assert_eq!(d.rule_id, "dns-random-looking-name");
            assert!(
                d.fields
                    .iter()
                    .any(|f| f.name == "QueryName" && f.value == name)
            );
            assert!(d.fields.iter().any(|f| f.name == "Label"));
        }
        !found.is_empty()
    }

    #[test]
    fn fixed_point_log2() {
        assert_eq!(log2_q16(1), 0);
        assert_eq!(log2_q16(2), 1 << 16);
        assert_eq!(log2_q16(1024), 10 << 16);
        // log2(3) = 1.58496...; log2(63) = 5.97728...
        assert!(log2_q16(3).abs_diff(103_872) <= 2, "{}", log2_q16(3));
        assert!(log2_q16(63).abs_diff(391_727) <= 2, "{}", log2_q16(63));
    }

    #[test]
    fn entropy_of_known_strings() {
        // 32 distinct characters: exactly 5 bits.
        let s = score("abcdefghijklmnopqrstuvwxyz012345").unwrap();
        assert!(s.entropy_millibits.abs_diff(5_000) <= 2, "{s:?}");
        // One repeated character: 0 bits.
        assert_eq!(score(&"b".repeat(30)).unwrap().entropy_millibits, 0);
        assert_eq!(score("short"), None);
    }

    #[test]
    fn random_looking_names_fire() {
        for name in [
            // base32 (DNS tunnelling, iodine-like)
            "mzxw6ytboi2dcnzsgu3tmnzuhe4dgmbq.t.example.net",
            // hex (dnscat2-like)
            "3f8a9c0d1e2b4a5c6d7e8f9a0b1c2d3e.example.org",
            // DGA-like consonant soup
            "xkqjvbwtrmplgnhzdfcsxkqwrtpl.com",
            // upper case makes no difference
            "XKQJVBWTRMPLGNHZDFCSXKQWRTPL.com",
            // base36
            "q7w2k9x4m1z8v3n6b5t0r2y7p4c9h1.info",
        ] {
            assert!(
                fires(name),
                "{name}: {:?}",
                name.split('.').next().and_then(score)
            );
        }
    }

    #[test]
    fn ordinary_names_are_quiet() {
        for name in [
            "www.example.com",
            "thisisaverylongsubdomainnameforthecdn.example.com",
            "my-load-balancer-1234567890.us-west-2.elb.amazonaws.com",
            "settings-win.data.microsoft.com",
            "r3---sn-4g5e6nsz.googlevideo.com",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com",
            "1.0.0.127.in-addr.arpa",
            "_ldap._tcp.dc._msdcs.corp.example.com",
            "",
        ] {
            assert!(!fires(name), "{name}");
        }
    }

    #[test]
    fn only_the_first_253_bytes_of_a_name_are_looked_at() {
        let random = "q8z3x7k2v9w4j6m1t5p0r8n2b7c4";
        // Within the DNS limit: found; past it: not looked at (bounded cost for crafted events).
        assert!(fires(&format!("{random}.{}", "a".repeat(200))));
        assert!(!fires(&format!("{}.{random}", "a.".repeat(150))));
        // Cut at a character boundary, never inside one.
        assert!(!fires(&"é".repeat(300)));
    }
}
