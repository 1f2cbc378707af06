//! Compiled Sigma rules as rule data for the evaluator pack (the layout is
//! `rulebox_sigma_eval::SigmaPack`'s: one self-delimiting record per rule, in index order).
//!
//! ```text
//!  out/sigma.wasm       the engine (rulebox_example_artifacts::SIGMA_EVAL), compiled once by the host
//!  out/sigma.01.rules   rule data of pack `sigma-01`: header "RBSP" u32-LE-length id, then
//!  out/sigma.02.rules   record × rules, each "RBSG", u32 LE length, postcard program
//!  out/sigma.index.rules  the packs' shared prefilter index ([`index_data`]): "RBSP" header,
//!                       then "RBSI", u32 LE length, postcard `IndexData`
//! ```
//!
//! A set is split into packs of at most [`MAX_PACK_DATA_BYTES`] of data ([`split_packs`]): each pack
//! is one instance of the engine, whose memory holds its data about twice (the input buffer it
//! was handed, and the evaluators built from it), within the default 16 MiB memory cap.

use rulebox_sigma_eval::{
    Evaluator, INDEX_FORMAT, IndexData, IndexRule, OPTION_NO_PREFILTER, Program, SplitData,
    push_header, push_index, push_options, push_record, push_rows, split_data_with_options,
};

use crate::SigmaError;
use crate::module::MAX_PROGRAM_BYTES;

/// The record of one compiled rule: what [`rule_data`] concatenates, and what a store can keep per
/// rule (a pack's data is its rules' records back to back).
pub fn rule_record(program: &Program<'_>) -> Result<Vec<u8>, SigmaError> {
    let bytes = program
        .to_bytes()
        .map_err(|e| SigmaError::Evaluator(format!("the program does not encode: {e}")))?;
    if bytes.len() > MAX_PROGRAM_BYTES {
        return Err(SigmaError::TooLarge {
            what: "the compiled program",
            size: bytes.len(),
            limit: MAX_PROGRAM_BYTES,
        });
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    push_record(&mut out, &bytes);
    Ok(out)
}

/// The rule data of a pack of `programs`, in order.
pub fn rule_data<'a>(
    programs: impl IntoIterator<Item = &'a Program<'a>>,
) -> Result<Vec<u8>, SigmaError> {
    let mut out = Vec::new();
    for p in programs {
        out.extend_from_slice(&rule_record(p)?);
    }
    Ok(out)
}

/// The most rule data one pack is given, each rule counted at its record's size plus
/// [`RULE_OVERHEAD_BYTES`] (one rule larger than this is a pack of its own).
///
/// An engine instance holds its data once (its tables are read in place), the decoded programs
/// (about half the data), a byte-row budget of up to 2 MiB (`BYTE_ROWS_BUDGET`), the prefilter, a
/// 256 KiB stack, and per rule its scan states, start tables and idle states. Cut by data alone,
/// the packs of small rules grew with their rule count: once Sigma lists were determinized as one
/// pattern, the data shrank, a pack took 316 rules and reached 8.8 MiB. Counted this way, the
/// largest SigmaHQ pack stays within half the 16 MiB default cap that `rulebox validate` allows
/// (`tests/pack.rs`).
pub const MAX_PACK_DATA_BYTES: usize = 3 << 20;

/// What one rule costs an engine instance besides its data, as [`split_packs`] counts it: measured
/// natively on the SigmaHQ packs (2026-12-02), 6 to 10 KiB a rule beyond the data and the rows.
pub const RULE_OVERHEAD_BYTES: usize = 8 << 10;

/// Splits `records` (each one rule's [`rule_record`], in order) into the rule data of packs of at
/// most `max_bytes` each, a record counted at its size plus [`RULE_OVERHEAD_BYTES`] (a larger
/// record alone), in order, named `{base}-01`, `{base}-02`, … by
/// their headers: the pack ids, and the data.
///
/// The packs are cut in [`pack_order`]: by event kinds, then by the fields the rules' prefilter
/// needs read, so that a field is scanned by few packs. (Cutting by kind alone, in file order,
/// was measured before the prefilter dominated a pack's cost and was 8-12% slower per event,
/// 42 packs instead of 30: `docs/performance.md`. Once the prefilter was most of a pack's own
/// work, the fields each pack scans became what the layout decides.)
pub fn split_packs(records: &[Vec<u8>], base: &str, max_bytes: usize) -> Vec<(String, Vec<u8>)> {
    split_packs_indexed(records, base, max_bytes)
        .into_iter()
        .map(|(id, data, _)| (id, data))
        .collect()
}

/// [`split_packs`], with each pack's members: the indices in `records` of its rules, in the
/// pack's index order ([`pack_order`]'s).
pub fn split_packs_indexed(
    records: &[Vec<u8>],
    base: &str,
    max_bytes: usize,
) -> Vec<(String, Vec<u8>, Vec<usize>)> {
    split_packs_with_rows(records, base, max_bytes, &[])
}

/// [`split_packs_indexed`], where the rules marked in `full_rows` (by index in `records`; missing
/// entries are `false`) get every row of 256 entries their automata may have in their pack, as
/// when alone (the pack's rows frame, `rulebox_sigma_eval::push_rows`), beyond the byte-row
/// budget the others share. Their rows count toward the pack's size like data, so a pack of such
/// rules holds fewer, and its memory stays within what a pack of data alone reaches.
///
/// `rulebox sigma compile` marks the rules that step through most of a field at the event cap
/// (`rulebox_validate::named::steps_through_fields`): through byte classes, a table step costs
/// about 21 instructions, through rows 15, and a rule stepping a whole 256 KiB field through
/// classes spends over half its fuel.
pub fn split_packs_with_rows(
    records: &[Vec<u8>],
    base: &str,
    max_bytes: usize,
    full_rows: &[bool],
) -> Vec<(String, Vec<u8>, Vec<usize>)> {
    split_packs_in_order(records, &pack_order(records), base, max_bytes, full_rows)
}

/// [`split_packs_with_rows`], cutting the records in `order` (indices into `records`; an index
/// out of range is skipped; an index given twice puts its rule twice, which the engine refuses
/// as a duplicate id) instead of [`pack_order`]'s: for tools and tests that compare layouts.
pub fn split_packs_in_order(
    records: &[Vec<u8>],
    order: &[usize],
    base: &str,
    max_bytes: usize,
    full_rows: &[bool],
) -> Vec<(String, Vec<u8>, Vec<usize>)> {
    let full = |i: usize| full_rows.get(i).copied().unwrap_or(false);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut size = 0;
    for &i in order {
        let Some(r) = records.get(i) else {
            continue;
        };
        let rows = if full(i) { rows_wanted(r) } else { 0 };
        let cost = r.len() + RULE_OVERHEAD_BYTES + rows;
        if groups.is_empty() || (size + cost > max_bytes && size > 0) {
            groups.push(Vec::new());
            size = 0;
        }
        size += cost;
        if let Some(g) = groups.last_mut() {
            g.push(i);
        }
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let id = format!("{base}-{:02}", i + 1);
            let mut data =
                Vec::with_capacity(g.iter().map(|&r| records[r].len()).sum::<usize>() + 64);
            push_header(&mut data, &id);
            let whole: Vec<u32> = (0u32..)
                .zip(&g)
                .filter(|&(_, &r)| full(r))
                .map(|(k, _)| k)
                .collect();
            push_rows(&mut data, &whole);
            for &r in &g {
                data.extend_from_slice(&records[r]);
            }
            (id, data, g)
        })
        .collect()
}

/// The order [`split_packs_with_rows`] cuts `records` in (indices into it): by event kinds, then,
/// within one set of kinds, by the fields their prefilter needs read: a rule's field name lists,
/// ranked by how few rules of `records` need each (rarest first), compared list by list, by name,
/// so that the rules whose rarest field is the same sit together; every tie in the given order;
/// records that do not decode first, in the given order.
///
/// A pack's prefilter scans, per event, each field some rule of the pack needs; a field
/// scanned by one rule of a pack is scanned for every event of the kind. Rules that need a
/// rare field (`Hashes`, `ParentCommandLine`, `OriginalFileName`) sit together, so that few
/// packs scan it, and the packs of rules needing only `CommandLine` scan that alone. Measured
/// natively on the SigmaHQ Windows set and its corpus events (2026-12-04, 3 MiB packs), against
/// the order of the files: 57 field scans per event instead of 109, 14.8 packs met instead of
/// 17.3, the prefilters' time 15.3 µs per event instead of 19.4, the same candidates.
pub fn pack_order(records: &[Vec<u8>]) -> Vec<usize> {
    // A field as the prefilter files it: its name list (`None`: keywords, every field).
    type Field = Option<Vec<String>>;
    // Per rule, the kinds and the fields its needs read.
    let keys: Vec<Option<(u32, Vec<Field>)>> = records
        .iter()
        .map(|r| {
            let program = Program::from_bytes(r.get(8..)?).ok()?;
            let mut fields: Vec<Field> = program
                .needs
                .iter()
                .flatten()
                .map(|n| {
                    n.field.map(|f| {
                        program
                            .fields
                            .get(usize::from(f))
                            .map_or_else(Vec::new, |spec| spec.names.clone())
                    })
                })
                .collect();
            fields.sort();
            fields.dedup();
            Some((program.kinds.0, fields))
        })
        .collect();
    let mut rules_needing: std::collections::BTreeMap<&Field, usize> =
        std::collections::BTreeMap::new();
    for (_, fields) in keys.iter().flatten() {
        for f in fields {
            *rules_needing.entry(f).or_default() += 1;
        }
    }
    let ranked: Vec<Option<(u32, Vec<&Field>)>> = keys
        .iter()
        .map(|k| {
            k.as_ref().map(|(kinds, fields)| {
                let mut fields: Vec<&Field> = fields.iter().collect();
                fields.sort_by_key(|f| (rules_needing.get(f).copied().unwrap_or(0), *f));
                (*kinds, fields)
            })
        })
        .collect();
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&a, &b| ranked[a].cmp(&ranked[b]));
    order
}

/// The bytes of the rows of 256 entries a rule's `record` may have (none if it does not decode).
fn rows_wanted(record: &[u8]) -> usize {
    record
        .get(8..)
        .and_then(|program| Evaluator::from_bytes_owned(program).ok())
        .map_or(0, |e| e.byte_rows_wanted())
}

/// The same pack's rule data with the engine's cross-rule prefilter switched off (every rule of
/// an event's kind runs on it): for tests and benchmarks that compare the two. Its rows frame is
/// kept.
pub fn without_prefilter(data: &[u8]) -> Result<Vec<u8>, SigmaError> {
    let split = split_data_with_options(data)
        .map_err(|e| SigmaError::Evaluator(format!("the rule data does not split: {e}")))?;
    let SplitData {
        id,
        full_rows,
        programs,
        ..
    } = split;
    let mut out = Vec::with_capacity(data.len() + 16);
    if let Some(id) = id {
        push_header(&mut out, id);
    }
    push_options(&mut out, OPTION_NO_PREFILTER);
    push_rows(&mut out, &full_rows);
    for p in programs {
        push_record(&mut out, p);
    }
    Ok(out)
}

/// The shared prefilter index (`rulebox_sigma_eval::IndexData`) of `packs`, each pack's rule data
/// in the order the host loads them, as rule data for the engine, named `id`: every rule's kinds,
/// fields and needs, and the digest of the packs' data ([`rulebox_runtime::index_digest`]), by
/// which the host uses it only with exactly these packs. An error names the pack and rule whose
/// program does not decode.
pub fn index_data<'a>(
    id: &str,
    packs: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, SigmaError> {
    let mut hashes = Vec::new();
    let mut rules = Vec::new();
    for (p, data) in packs.into_iter().enumerate() {
        hashes.push(rulebox_runtime::content_hash(data));
        let split = split_data_with_options(data)
            .map_err(|e| SigmaError::Evaluator(format!("pack {p} does not split: {e}")))?;
        for (r, bytes) in split.programs.into_iter().enumerate() {
            let program = Program::from_bytes(bytes).map_err(|e| {
                SigmaError::Evaluator(format!("pack {p}, rule {r}: the program is refused: {e}"))
            })?;
            rules.push(IndexRule {
                id: program.id,
                version: program.version,
                severity: program.severity,
                kinds: program.kinds,
                fields: program.fields,
                needs: program.needs,
            });
        }
    }
    let index = IndexData {
        format: INDEX_FORMAT,
        digest: rulebox_runtime::index_digest(hashes.iter().map(String::as_str)),
        rules,
    };
    let mut out = Vec::new();
    push_header(&mut out, id);
    push_index(&mut out, &index);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_split_at_the_cap_and_keep_every_record_in_order() {
        let records: Vec<Vec<u8>> = [5usize, 5, 20, 1, 1]
            .iter()
            .map(|&n| {
                let mut r = Vec::new();
                push_record(&mut r, &vec![7; n]);
                r
            })
            .collect();
        let packs = split_packs(&records, "sigma", 2 * RULE_OVERHEAD_BYTES + 30);
        let ids: Vec<_> = packs.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["sigma-01", "sigma-02", "sigma-03"]);
        let sizes: Vec<Vec<usize>> = packs
            .iter()
            .map(|(id, data)| {
                let (named, programs) = rulebox_sigma_eval::split_data(data).unwrap();
                assert_eq!(named, Some(id.as_str()));
                programs.iter().map(|p| p.len()).collect()
            })
            .collect();
        assert_eq!(sizes, [vec![5, 5], vec![20], vec![1, 1]]);
        let off = without_prefilter(&packs[0].1).unwrap();
        let split = split_data_with_options(&off).unwrap();
        assert_eq!(
            (split.id, split.flags, split.programs.len()),
            (Some("sigma-01"), OPTION_NO_PREFILTER, 2)
        );
    }

    #[test]
    fn marked_rules_are_named_in_the_rows_frame_and_their_rows_count_in_the_cut() {
        let records = [
            sigma("p1", "process_creation", "CommandLine"),
            sigma("p2", "process_creation", "CommandLine"),
            sigma("p3", "process_creation", "CommandLine"),
        ];
        let rows = rows_wanted(&records[1]);
        assert!(rows > 0, "a search anywhere wants rows");
        let data: usize = records.iter().map(|r| r.len() + RULE_OVERHEAD_BYTES).sum();
        let marks = [false, true, false];
        let one = split_packs_with_rows(&records, "sigma", data + rows, &marks);
        assert_eq!(one.len(), 1);
        let split = split_data_with_options(&one[0].1).unwrap();
        assert_eq!(
            split.full_rows,
            [1],
            "the marked rule, by its index in the pack"
        );
        let pack = rulebox_sigma_eval::SigmaPack::from_data(&one[0].1).unwrap();
        assert_eq!(pack.rules().len(), 3);
        // Its rows count like data: a cap that holds the data alone cuts the pack.
        let two = split_packs_with_rows(&records, "sigma", data + rows - 1, &marks);
        let members: Vec<&[usize]> = two.iter().map(|(_, _, m)| m.as_slice()).collect();
        assert_eq!(members, [&[0, 1][..], &[2][..]]);
        assert_eq!(
            split_data_with_options(&two[1].1).unwrap().full_rows,
            [0u32; 0]
        );
        // Unmarked, the same cap holds them all, and the data has no rows frame.
        let plain = split_packs_with_rows(&records, "sigma", data + rows - 1, &[]);
        assert_eq!(plain.len(), 1);
        assert!(
            split_data_with_options(&plain[0].1)
                .unwrap()
                .full_rows
                .is_empty()
        );
        let off = without_prefilter(&one[0].1).unwrap();
        assert_eq!(
            split_data_with_options(&off).unwrap().full_rows,
            [1],
            "kept"
        );
    }

    fn sigma(id: &str, category: &str, field: &str) -> Vec<u8> {
        let yaml = format!(
            "title: {id}\nid: {id}\nlogsource:\n  product: windows\n  category: {category}\n\
             detection:\n  sel:\n    {field}|contains: 'x{id}'\n  condition: sel\n"
        );
        rule_record(&crate::compile(&yaml).unwrap()).unwrap()
    }

    #[test]
    fn each_pack_names_its_members_and_holds_their_programs_in_order() {
        let records = [
            sigma("p1", "process_creation", "CommandLine"),
            sigma("f1", "file_event", "TargetFilename"),
            sigma("p2", "process_creation", "CommandLine"),
        ];
        let cap = records[0].len() + records[1].len() + 2 * RULE_OVERHEAD_BYTES;
        let packs = split_packs_indexed(&records, "sigma", cap);
        let members: Vec<&[usize]> = packs.iter().map(|(_, _, m)| m.as_slice()).collect();
        // Cut in pack order: the two process rules together, whichever kind comes first.
        assert!(
            members == [&[0, 2][..], &[1][..]] || members == [&[1, 0][..], &[2][..]],
            "{members:?}"
        );
        assert_eq!(members.concat(), pack_order(&records));
        for (id, data, members) in &packs {
            let (named, programs) = rulebox_sigma_eval::split_data(data).unwrap();
            assert_eq!(named, Some(id.as_str()));
            let expected: Vec<&[u8]> = members.iter().map(|&m| &records[m][8..]).collect();
            assert_eq!(
                programs, expected,
                "{id} holds its members' programs, in order"
            );
        }
    }

    #[test]
    fn pack_order_groups_kinds_then_rules_by_their_rarest_field_and_keeps_ties_in_order() {
        let mut junk = Vec::new();
        push_record(&mut junk, b"not a program");
        let records = [
            sigma("c1", "process_creation", "CommandLine"),
            sigma("h1", "process_creation", "Hashes"),
            sigma("f1", "file_event", "TargetFilename"),
            sigma("c2", "process_creation", "CommandLine"),
            junk,
            sigma("h2", "process_creation", "Hashes"),
            sigma("c3", "process_creation", "CommandLine"),
        ];
        let order = pack_order(&records);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..records.len()).collect::<Vec<_>>(),
            "a permutation"
        );
        assert_eq!(order[0], 4, "what does not decode comes first");
        let process: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| i != 2 && i != 4)
            .collect();
        assert_eq!(
            process,
            [0, 3, 6, 1, 5],
            "the rules by their rarest field, the fields by name, ties in the given order"
        );
        let at = |i: usize| order.iter().position(|&o| o == i).unwrap();
        assert!(
            at(2) == 1 || at(2) == records.len() - 1,
            "the file rule is not among the process rules: {order:?}"
        );
        // The packs hold the records in that order, each once.
        let packs = split_packs_indexed(&records, "sigma", 3 * RULE_OVERHEAD_BYTES);
        let members: Vec<usize> = packs.iter().flat_map(|(_, _, m)| m.clone()).collect();
        assert_eq!(members, order);
    }
}
