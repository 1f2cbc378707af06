//! The evaluator as a rule pack (ABI 3): one module for every Sigma rule, its rules are data.
//!
//! The rule data is a sequence of **records**, one per rule, each decodable on its own:
//!
//! ```text
//!  header  := "RBSP"  u32 (little-endian) length n   n bytes: the pack id (UTF-8)     optional
//!  options := "RBSO"  u32 (little-endian) length n   n bytes: flags (below)            optional
//!  rows    := "RBSR"  u32 (little-endian) length 4k  k u32 (little-endian) rule indices optional
//!  record  := "RBSG"  u32 (little-endian) length n   n bytes: the rule's program (postcard)
//!  data    := header? options? rows? record*          rules in index order
//! ```
//!
//! The rows frame names, strictly ascending, the rules whose automata all get rows of 256 entries
//! at load as when the rule is alone (each up to [`BYTE_ROWS_UP_TO`](crate::BYTE_ROWS_UP_TO)
//! states), beyond the pack's byte-row budget ([`BYTE_ROWS_BUDGET`]), which the others share: the
//! rules the compiler measured stepping through most of a field at the event cap
//! (`rulebox_sigma::split_packs_with_rows`), which would otherwise spend over half their fuel
//! there. It changes how fast a rule scans, never what it finds.
//!
//! The options are for tests and benchmarks: bit 0 of their first byte switches the cross-rule
//! prefilter ([`Prefilter`]) off, so that every rule of an event's kind runs on it; any other bit
//! set is refused. Without them the pack builds the prefilter at load from its rules' needed
//! literals ([`Program::needs`](crate::Program::needs)) and runs, per event, only the rules it
//! names.
//!
//! A rule's record is the same bytes whichever pack it is in, so a store can keep one record per
//! rule and hand the engine their concatenation; updating one rule is a new concatenation with that
//! record replaced: a data load into the engine, never a compile. The pack's id is the header's, or
//! [`PACK_ID`] without one (several packs of one engine in a rule set need distinct ids).
//!
//! An engine module built with a program embedded ([`LOCATOR_MAGIC`](crate::LOCATOR_MAGIC), the
//! one-rule modules of `rulebox_sigma::build_module`) loads with empty data as a pack of that one
//! rule, whose pack id is the rule's id.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use rulebox_sdk::{Detections, EventView, Pack, PackError, PackMetadata, RuleMetadata};

use crate::eval::Evaluator;
use crate::index::{INDEX_MAGIC, INDEX_PACK_NAME, IndexRule, decode_index};
use crate::prefilter::{MAX_INDEX_SCANNED_BYTES, Prefilter};
use crate::program::ProgramError;

/// The magic every record starts with.
pub const RECORD_MAGIC: [u8; 4] = *b"RBSG";

/// The magic of the optional header naming the pack.
pub const HEADER_MAGIC: [u8; 4] = *b"RBSP";

/// The magic of the optional options frame (after the header, before the records).
pub const OPTIONS_MAGIC: [u8; 4] = *b"RBSO";

/// The magic of the optional rows frame (after the options, before the records).
pub const ROWS_MAGIC: [u8; 4] = *b"RBSR";

/// Options bit: no cross-rule prefilter (every rule of an event's kind runs on it).
pub const OPTION_NO_PREFILTER: u8 = 1;

/// The bytes of the faster byte-row tables the automata of one pack may build at load, given to
/// the smallest automata first (the rest scan through their byte classes): what keeps a pack of
/// thousands of rules within the default 16 MiB memory cap.
pub const BYTE_ROWS_BUDGET: usize = 2 << 20;

/// The pack id of an engine loaded with rule data without a header.
pub const PACK_ID: &str = "sigma";

/// Appends the record of one rule's encoded program to `out`.
///
/// # Panics
///
/// If `program` is 4 GiB or more (the compiler caps programs far below).
pub fn push_record(out: &mut Vec<u8>, program: &[u8]) {
    let len = u32::try_from(program.len()).expect("a program under 4 GiB");
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(program);
}

/// Appends the header naming the pack `id` to `out` (first, before any record).
///
/// # Panics
///
/// If `id` is 4 GiB or more.
pub fn push_header(out: &mut Vec<u8>, id: &str) {
    let len = u32::try_from(id.len()).expect("an id under 4 GiB");
    out.extend_from_slice(&HEADER_MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(id.as_bytes());
}

/// Appends the options frame with `flags` to `out` (after the header, before any record).
pub fn push_options(out: &mut Vec<u8>, flags: u8) {
    out.extend_from_slice(&OPTIONS_MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.push(flags);
}

/// Appends the rows frame naming `rules` (indices of the records that follow, strictly ascending)
/// to `out` (after the options, before any record); nothing when `rules` is empty.
///
/// # Panics
///
/// If `rules` has a billion entries or more.
pub fn push_rows(out: &mut Vec<u8>, rules: &[u32]) {
    if rules.is_empty() {
        return;
    }
    let len = u32::try_from(rules.len() * 4).expect("under a billion rules");
    out.extend_from_slice(&ROWS_MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    for r in rules {
        out.extend_from_slice(&r.to_le_bytes());
    }
}

/// The pack id the header of `data` names (if it has one) and the programs of `data`, in order,
/// each checked for its framing only (not decoded).
pub fn split_data(data: &[u8]) -> Result<(Option<&str>, Vec<&[u8]>), PackError> {
    let split = split_data_with_options(data)?;
    Ok((split.id, split.programs))
}

/// What [`split_data_with_options`] finds in a pack's rule data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SplitData<'a> {
    /// The pack id of the header, if there is one.
    pub id: Option<&'a str>,
    /// The option flags (0 without an options frame).
    pub flags: u8,
    /// The rules of the rows frame (indices into `programs`, strictly ascending; empty without).
    pub full_rows: Vec<u32>,
    /// The programs, in order, each checked for its framing only.
    pub programs: Vec<&'a [u8]>,
}

/// [`split_data`], and the option flags and the rows frame (see the module docs).
pub fn split_data_with_options(data: &[u8]) -> Result<SplitData<'_>, PackError> {
    let (id, mut rest) = header(data)?;
    let mut flags = 0;
    if rest.starts_with(&OPTIONS_MAGIC) {
        let at = data.len() - rest.len();
        let (body, tail) = frame(rest, at)?;
        flags = body.first().copied().unwrap_or(0);
        if flags & !OPTION_NO_PREFILTER != 0 || body.len() > 1 {
            return Err(PackError::new(format!(
                "the options at byte {at} set flags this engine does not know"
            )));
        }
        rest = tail;
    }
    let mut full_rows = Vec::new();
    if rest.starts_with(&ROWS_MAGIC) {
        let at = data.len() - rest.len();
        let (body, tail) = frame(rest, at)?;
        let (words, odd) = body.as_chunks::<4>();
        if !odd.is_empty() {
            return Err(PackError::new(format!(
                "the rows frame at byte {at} is {} bytes, not a whole number of rule indices",
                body.len()
            )));
        }
        full_rows = words.iter().map(|w| u32::from_le_bytes(*w)).collect();
        rest = tail;
    }
    let start = data.len() - rest.len();
    let programs = records_from(rest, start)?;
    let ascending = full_rows.windows(2).all(|w| w[0] < w[1]);
    if let Some(&last) = full_rows.last()
        && (!ascending || last as usize >= programs.len())
    {
        return Err(PackError::new(format!(
            "the rows frame names rules that are not strictly ascending indices below the {} rules",
            programs.len()
        )));
    }
    Ok(SplitData {
        id,
        flags,
        full_rows,
        programs,
    })
}

/// The pack id of the header `data` starts with, if it has one, and the rest of `data`.
fn header(data: &[u8]) -> Result<(Option<&str>, &[u8]), PackError> {
    if !data.starts_with(&HEADER_MAGIC) {
        return Ok((None, data));
    }
    let (name, rest) = frame(data, 0)?;
    let id = core::str::from_utf8(name)
        .map_err(|_| PackError::new("the pack id in the header is not UTF-8"))?;
    Ok((Some(id), rest))
}

/// The programs of `data` (records only, no header), in order, each checked for its framing only.
pub fn records(data: &[u8]) -> Result<Vec<&[u8]>, PackError> {
    records_from(data, 0)
}

/// One frame (magic, length, body) at the start of `rest`, which is at byte `at` of the data.
fn frame(rest: &[u8], at: usize) -> Result<(&[u8], &[u8]), PackError> {
    let Some((head, tail)) = rest.split_at_checked(8) else {
        return Err(PackError::new(format!(
            "truncated record header at byte {at}"
        )));
    };
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    tail.split_at_checked(len).ok_or_else(|| {
        PackError::new(format!(
            "the record at byte {at} says {len} bytes, more than the data holds"
        ))
    })
}

fn records_from(data: &[u8], offset: usize) -> Result<Vec<&[u8]>, PackError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let at = offset + data.len() - rest.len();
        if rest.len() < 8 {
            return Err(PackError::new(format!(
                "truncated record header at byte {at}"
            )));
        }
        if rest[..4] != RECORD_MAGIC {
            return Err(PackError::new(format!(
                "no record at byte {at} (the rule data is not compiled Sigma rules)"
            )));
        }
        let (program, tail) = frame(rest, at)?;
        out.push(program);
        rest = tail;
    }
    Ok(out)
}

/// The pack id of a header, if any, and the body of an index frame.
type IndexFrame<'a> = (Option<&'a str>, &'a [u8]);

/// The pack id the header of `data` names (if it has one) and the body of its index frame, when
/// `data` is a shared prefilter index (`crate::index`): `None` when it is not one.
fn index_frame(data: &[u8]) -> Result<Option<IndexFrame<'_>>, PackError> {
    let (id, rest) = header(data)?;
    if !rest.starts_with(&INDEX_MAGIC) {
        return Ok(None);
    }
    let at = data.len() - rest.len();
    let (body, tail) = frame(rest, at)?;
    if !tail.is_empty() {
        return Err(PackError::new(format!(
            "{} bytes follow the prefilter index at byte {at}",
            tail.len()
        )));
    }
    Ok(Some((id, body)))
}

/// The Sigma evaluator as a pack: one [`Evaluator`] per rule of its data, and the cross-rule
/// [`Prefilter`] over them; or, loaded with an index (`crate::index`), the prefilter of many
/// packs' rules, which it never evaluates.
pub struct SigmaPack {
    id: String,
    rules: Vec<Evaluator<'static>>,
    prefilter: Option<Prefilter>,
    /// The index's rules and digest, when the data is an index.
    index: Option<(Vec<IndexRule>, String)>,
}

impl SigmaPack {
    /// The pack of the programs in `data` (see the module docs), its tables copied out of `data`.
    pub fn from_data(data: &[u8]) -> Result<SigmaPack, PackError> {
        SigmaPack::build(data, Evaluator::from_bytes_owned)
    }

    /// The pack of the programs in `data`, which it keeps: the automata's tables are read where
    /// they are in `data` (in the sandbox, the input buffer the SDK hands over for good,
    /// [`Pack::load_kept`]), so the instance holds them once rather than twice.
    pub fn from_kept(data: &'static [u8]) -> Result<SigmaPack, PackError> {
        SigmaPack::build(data, Evaluator::from_bytes_within)
    }

    fn build<'d>(
        data: &'d [u8],
        evaluator: impl Fn(&'d [u8]) -> Result<Evaluator<'static>, ProgramError>,
    ) -> Result<SigmaPack, PackError> {
        if let Some((id, body)) = index_frame(data)? {
            let index = decode_index(body)?;
            return Ok(SigmaPack {
                id: id.unwrap_or(PACK_ID).into(),
                rules: Vec::new(),
                prefilter: Some(
                    Prefilter::new(&index.rules).with_scan_limit(MAX_INDEX_SCANNED_BYTES),
                ),
                index: Some((index.rules, index.digest)),
            });
        }
        let SplitData {
            id,
            flags,
            full_rows,
            programs,
        } = split_data_with_options(data)?;
        let mut rules = Vec::new();
        for (i, program) in programs.into_iter().enumerate() {
            rules.push(evaluator(program).map_err(|e| refused(i, &e))?);
        }
        give_rows(&mut rules, &full_rows, BYTE_ROWS_BUDGET);
        if rules.is_empty() {
            return Err(PackError::new("the rule data holds no rules"));
        }
        let prefilter = (flags & OPTION_NO_PREFILTER == 0).then(|| Prefilter::new(&rules));
        Ok(SigmaPack {
            id: id.unwrap_or(PACK_ID).into(),
            rules,
            prefilter,
            index: None,
        })
    }

    /// The one-rule pack of an encoded program embedded in the module.
    pub fn from_program(program: &'static [u8]) -> Result<SigmaPack, PackError> {
        let eval = Evaluator::from_bytes(program).map_err(|e| refused(0, &e))?;
        Ok(SigmaPack {
            id: eval.id().into(),
            rules: alloc::vec![eval],
            prefilter: None,
            index: None,
        })
    }

    /// The rules, in index order.
    pub fn rules(&self) -> &[Evaluator<'static>] {
        &self.rules
    }

    /// The prefilter (`None` when the options switched it off, or for a one-rule pack).
    pub fn prefilter(&self) -> Option<&Prefilter> {
        self.prefilter.as_ref()
    }

    /// The rules of the index and its digest, when the pack was loaded with one (`crate::index`).
    pub fn index(&self) -> Option<(&[IndexRule], &str)> {
        self.index.as_ref().map(|(r, d)| (r.as_slice(), d.as_str()))
    }
}

/// Rows of 256 entries (one table load less per byte stepped) for the pack's automata within
/// `budget` bytes: the searches anywhere in a field first, which may step through all of it, then
/// the other forward scans, then the backward ones (`Automaton::rows_priority`), each smallest
/// first (ties by rule id), so that as many of the automata that matter as the budget holds get
/// them rather than those of the first rules: which tables a rule gets, and so its fuel per
/// event, does not depend on where it sits in the pack, and is the same on every endpoint.
///
/// The rules of `full` (the rows frame: ascending indices) get rows for every automaton that may
/// have them, outside the budget, as when each is alone.
fn give_rows(rules: &mut [Evaluator<'_>], full: &[u32], mut budget: usize) {
    let mut wanted: Vec<(u8, usize, &str, usize, usize)> = Vec::new();
    let mut chosen: Vec<(usize, usize)> = Vec::new();
    for (r, rule) in rules.iter().enumerate() {
        let whole = u32::try_from(r).is_ok_and(|r| full.binary_search(&r).is_ok());
        for (k, priority, size) in rule.rows_wanted() {
            if whole {
                chosen.push((r, k));
            } else {
                wanted.push((priority, size, rule.id(), k, r));
            }
        }
    }
    wanted.sort_unstable();
    for (_, size, _, k, r) in wanted {
        // A larger automaton of an earlier class may not fit where smaller ones of a later do.
        if size <= budget {
            budget -= size;
            chosen.push((r, k));
        }
    }
    for (r, k) in chosen {
        if let Some(automaton) = rules[r].automata_mut().nth(k) {
            automaton.give_rows();
        }
    }
}

fn refused(index: usize, e: &ProgramError) -> PackError {
    PackError::new(format!("rule {index}: the program is refused: {e}"))
}

impl Pack for SigmaPack {
    fn load(data: &[u8]) -> Result<Self, PackError> {
        if data.is_empty() {
            #[cfg(target_arch = "wasm32")]
            if let Some(program) = crate::guest::embedded_program() {
                return SigmaPack::from_program(program);
            }
            return Err(PackError::new(
                "no rule data: load the Sigma engine with compiled rules (`rulebox sigma compile`)",
            ));
        }
        SigmaPack::from_data(data)
    }

    fn load_kept(data: &'static [u8]) -> Result<Self, PackError> {
        if data.is_empty() {
            return SigmaPack::load(data);
        }
        SigmaPack::from_kept(data)
    }

    fn metadata(&self) -> PackMetadata<'_> {
        if let Some((rules, digest)) = &self.index {
            return PackMetadata {
                schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
                id: Cow::Borrowed(&self.id),
                name: Cow::Borrowed(INDEX_PACK_NAME),
                version: Cow::Borrowed(digest),
                rules: rules
                    .iter()
                    .map(|r| RuleMetadata {
                        schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
                        id: Cow::Borrowed(&r.id),
                        name: Cow::Borrowed(&r.id),
                        version: Cow::Borrowed(&r.version),
                        severity: r.severity,
                        subscriptions: r.kinds,
                    })
                    .collect(),
            };
        }
        PackMetadata {
            schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
            id: Cow::Borrowed(&self.id),
            name: Cow::Borrowed("Sigma rules"),
            version: Cow::Borrowed(env!("CARGO_PKG_VERSION")),
            rules: self
                .rules
                .iter()
                .map(|r| RuleMetadata {
                    schema_version: rulebox_sdk::abi::SCHEMA_VERSION,
                    id: Cow::Borrowed(r.id()),
                    name: Cow::Borrowed(r.title()),
                    version: Cow::Borrowed(r.version()),
                    severity: r.severity(),
                    subscriptions: r.kinds(),
                })
                .collect(),
        }
    }

    fn on_event(&mut self, rule: usize, event: &EventView<'_>, out: &mut Detections) {
        // An index has no evaluator: its rules are evaluated by their own packs.
        if let Some(eval) = self.rules.get_mut(rule) {
            eval.detect(event, out);
        }
    }

    const PREFILTER: bool = true;

    fn candidates(&mut self, event: &EventView<'_>, subscribed: &[u32], out: &mut Vec<u32>) {
        match &mut self.prefilter {
            Some(p) => p.candidates(event, subscribed, out),
            None => out.extend_from_slice(subscribed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_loads_as_a_pack_of_no_evaluator_and_bad_framing_around_it_is_refused() {
        use crate::index::{INDEX_FORMAT, IndexData, IndexRule, push_index};
        let index = IndexData {
            format: INDEX_FORMAT,
            digest: "d".into(),
            rules: alloc::vec![IndexRule {
                id: "r".into(),
                version: "1".into(),
                severity: rulebox_sdk::Severity::Low,
                kinds: rulebox_sdk::EventKinds::of(&[rulebox_sdk::EventKind::ProcessStart]),
                fields: alloc::vec![],
                needs: alloc::vec![],
            }],
        };
        let mut data = Vec::new();
        push_header(&mut data, "ix");
        push_index(&mut data, &index);
        let pack = SigmaPack::from_data(&data).unwrap();
        assert!(pack.rules().is_empty());
        assert_eq!(pack.index().map(|(r, d)| (r.len(), d)), Some((1, "d")));
        let meta = pack.metadata();
        assert_eq!(
            (&*meta.id, &*meta.name, &*meta.version),
            ("ix", INDEX_PACK_NAME, "d")
        );
        let mut trailing = data.clone();
        trailing.push(0);
        let e = SigmaPack::from_data(&trailing).err().unwrap();
        assert!(e.0.contains("follow the prefilter index"), "{e}");
        let mut bad_id = Vec::new();
        bad_id.extend_from_slice(&HEADER_MAGIC);
        bad_id.extend_from_slice(&1u32.to_le_bytes());
        bad_id.push(0xff);
        push_index(&mut bad_id, &index);
        let e = SigmaPack::from_data(&bad_id).err().unwrap();
        assert!(e.0.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn records_round_trip_and_bad_framing_is_refused() {
        let mut data = Vec::new();
        push_record(&mut data, b"abc");
        push_record(&mut data, b"");
        assert_eq!(records(&data).unwrap(), [&b"abc"[..], &b""[..]]);
        assert!(records(&data[..data.len() - 1]).is_err());
        assert!(records(b"RBSG\xff\xff\xff\xff").is_err());
        assert!(records(b"junk data").is_err());
        assert!(SigmaPack::from_data(b"").is_err());
        let mut named = Vec::new();
        push_header(&mut named, "sigma-02");
        named.extend_from_slice(&data);
        let (id, programs) = split_data(&named).unwrap();
        assert_eq!(id, Some("sigma-02"));
        assert_eq!(programs.len(), 2);
        assert!(split_data(&named[..10]).is_err());
        let mut bad = Vec::new();
        push_record(&mut bad, b"not a program");
        let e = SigmaPack::from_data(&bad).err().unwrap();
        assert!(e.0.contains("rule 0"), "{e}");
        let mut opts = Vec::new();
        push_header(&mut opts, "p");
        push_options(&mut opts, OPTION_NO_PREFILTER);
        opts.extend_from_slice(&data);
        let split = split_data_with_options(&opts).unwrap();
        assert_eq!(
            (split.id, split.flags, split.programs.len()),
            (Some("p"), OPTION_NO_PREFILTER, 2)
        );
        assert!(split.full_rows.is_empty());
        let mut rows = Vec::new();
        push_header(&mut rows, "p");
        push_rows(&mut rows, &[1]);
        rows.extend_from_slice(&data);
        assert_eq!(split_data_with_options(&rows).unwrap().full_rows, [1]);
        for (bad, why) in [
            (&[2u32][..], "an index past the rules"),
            (&[1, 1], "an index twice"),
            (&[1, 0], "indices out of order"),
        ] {
            let mut d = Vec::new();
            push_rows(&mut d, bad);
            d.extend_from_slice(&data);
            let e = split_data(&d).unwrap_err();
            assert!(e.0.contains("rows frame"), "{why}: {e}");
        }
        let mut odd = Vec::new();
        odd.extend_from_slice(&ROWS_MAGIC);
        odd.extend_from_slice(&3u32.to_le_bytes());
        odd.extend_from_slice(&[0, 0, 0]);
        odd.extend_from_slice(&data);
        let e = split_data(&odd).unwrap_err();
        assert!(e.0.contains("whole number"), "{e}");
        let mut unknown = Vec::new();
        push_options(&mut unknown, 0x80);
        assert!(
            split_data(&unknown).is_err(),
            "an unknown option is refused"
        );
    }
}
