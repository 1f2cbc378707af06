//! A rule's tree of field tests ([`Node`]) lowered to the evaluator's program: a table of fields,
//! one scan per field and direction answering every text pattern of the rule on that field, and
//! the condition over their answers.
//!
//! The patterns of one field are split by where they can be decided:
//!
//! | patterns | automaton | cost per event |
//! |---|---|---|
//! | whole values, prefixes (bounded) | anchored, forward | at most the longest pattern |
//! | suffixes (bounded) | anchored, backward from the end | at most the longest pattern |
//! | anything else (`contains`, inner wildcards, regular expressions) | unanchored | one pass over the value |
//!
//! so a field is read once per automaton, and at most once in full. An automaton that would be too
//! large is split in two (each half a pass of its own); one pattern too large alone is refused.

use std::collections::HashMap;

use regex_syntax::hir::{Hir, HirKind, Repetition};
use rulebox_sigma_eval::{BYTE_ROWS_UP_TO, Check as EvalCheck, Expr, FieldSpec, Gate, Need, Scan};

use crate::SigmaError;
use crate::automaton::{BuildError, Mode, build};
use crate::case;
use crate::gate;
use crate::ir::{Check, Glob, Node, Pattern, Position};
use crate::literals;
use crate::logsource::Lookup;

/// The lowered parts of a program.
#[derive(Debug)]
pub struct Lowered {
    /// The fields.
    pub fields: Vec<FieldSpec>,
    /// The automata.
    pub scans: Vec<Scan<'static>>,
    /// The lowered guard.
    pub guard: Expr,
    /// The lowered condition.
    pub condition: Expr,
    /// The reported fields.
    pub report: Vec<u16>,
    /// The scan of the literals the condition needs, when it is worth a pass of its own.
    pub gate: Option<Gate>,
    /// The literals the condition needs, for the pack's prefilter (empty: none can be named).
    pub needs: Vec<Vec<Need>>,
}

/// Where one text test ended up.
type Slot = (u16, u16);

struct Lowerer {
    lookup: Lookup,
    fields: Vec<FieldSpec>,
    by_name: HashMap<String, u16>,
    /// Per target (a field, or `None` for keywords): its distinct patterns.
    patterns: Vec<(Option<String>, Vec<Pattern>)>,
}

/// Lowers `guard` and `condition` (sharing fields and automata) and the `report` field names.
pub fn lower(
    guard: &Node,
    condition: &Node,
    report: &[String],
    lookup: Lookup,
) -> Result<Lowered, SigmaError> {
    let mut l = Lowerer {
        lookup,
        fields: Vec::new(),
        by_name: HashMap::new(),
        patterns: Vec::new(),
    };
    l.gather(guard);
    l.gather(condition);
    let groups = l.groups(&[guard, condition]);
    let (mut scans, slots) = l.build_scans(&groups)?;
    let guard_expr = l.expr(guard, &slots)?;
    let condition_expr = l.expr(condition, &slots)?;
    let report = report
        .iter()
        .map(|name| l.field(name))
        .collect::<Result<_, _>>()?;
    let gate = l.gate(condition, &mut scans)?;
    let needs = l.needs(condition)?;
    Ok(Lowered {
        fields: l.fields,
        scans,
        guard: guard_expr,
        condition: condition_expr,
        report,
        gate,
        needs,
    })
}

/// `ThreatName` → `Threat Name`: a space before each capital that follows a lowercase letter or a
/// digit. `None` when that changes nothing.
fn spaced(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev: Option<char> = None;
    for c in name.chars() {
        if c.is_ascii_uppercase()
            && prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push(' ');
        }
        out.push(c);
        prev = Some(c);
    }
    (out != name).then_some(out)
}

impl Lowerer {
    fn field(&mut self, name: &str) -> Result<u16, SigmaError> {
        if let Some(&i) = self.by_name.get(name) {
            return Ok(i);
        }
        let i = u16::try_from(self.fields.len()).map_err(|_| SigmaError::TooLarge {
            what: "the number of fields",
            size: self.fields.len() + 1,
            limit: usize::from(u16::MAX),
        })?;
        let mut names = vec![name.to_owned()];
        if self.lookup.spaced_names
            && let Some(s) = spaced(name)
        {
            names.push(s);
        }
        self.fields.push(FieldSpec {
            names,
            elements: self.lookup.elements,
        });
        self.by_name.insert(name.to_owned(), i);
        Ok(i)
    }

    /// Collects the distinct text patterns of every target.
    fn gather(&mut self, node: &Node) {
        match node {
            Node::And(v) | Node::Or(v) => v.iter().for_each(|n| self.gather(n)),
            Node::Not(n) => self.gather(n),
            Node::Text { field, pattern } => {
                let list = match self.patterns.iter_mut().find(|(f, _)| f == field) {
                    Some((_, list)) => list,
                    None => {
                        self.patterns.push((field.clone(), Vec::new()));
                        &mut self.patterns.last_mut().expect("just pushed").1
                    }
                };
                if !list.contains(pattern) {
                    list.push(pattern.clone());
                }
            }
            Node::True | Node::False | Node::Kind(_) | Node::Check { .. } => {}
        }
    }

    /// What `condition` needs (see [`crate::needs`]), for the pack's cross-rule prefilter.
    fn needs(&mut self, condition: &Node) -> Result<Vec<Vec<Need>>, SigmaError> {
        let Some(clauses) = crate::needs::needs(condition) else {
            return Ok(Vec::new());
        };
        clauses
            .into_iter()
            .map(|c| {
                c.into_iter()
                    .map(|(name, text)| {
                        let field = match name {
                            Some(name) => Some(self.field(&name)?),
                            None => None,
                        };
                        Ok(Need { field, text })
                    })
                    .collect()
            })
            .collect()
    }

    /// The gate of `condition` (see [`crate::gate`]): a scan of the few literals it needs on one
    /// field, when that field has more patterns to search for anywhere in it than that.
    fn gate(
        &mut self,
        condition: &Node,
        scans: &mut Vec<Scan<'static>>,
    ) -> Result<Option<Gate>, SigmaError> {
        let Some(need) = gate::need(condition) else {
            return Ok(None);
        };
        // The clauses that fit, fewest texts first.
        let mut clauses_in = need.clauses.clone();
        clauses_in.sort_by_key(Vec::len);
        let mut texts: Vec<&str> = Vec::new();
        let mut kept: Vec<&Vec<String>> = Vec::new();
        for c in &clauses_in {
            // Clauses share no text: the scan stops once each clause's group has a text, and a
            // text of two clauses would count for one only, so after it the scan would go on over
            // the whole field for a clause that already holds. A clause left out lets more
            // events through the gate, never fewer.
            if c.iter().any(|t| texts.contains(&t.as_str())) {
                continue;
            }
            if texts.len() + c.len() > MAX_GATE {
                break;
            }
            for t in c {
                if !texts.contains(&t.as_str()) {
                    texts.push(t);
                }
            }
            kept.push(c);
        }
        if kept.is_empty() {
            return Ok(None);
        }
        let searched: usize = self
            .patterns
            .iter()
            .filter(|(f, _)| f.as_deref() == Some(need.field.as_str()))
            .flat_map(|(_, ps)| ps)
            .filter(|p| placed(p).0 == Mode::Unanchored)
            .count();
        if searched <= texts.len() {
            return Ok(None);
        }
        let field = self.field(&need.field)?;
        let number = |t: &String| {
            u16::try_from(texts.iter().position(|x| *x == t.as_str()).unwrap_or(0)).unwrap_or(0)
        };
        let clauses: Vec<Vec<u16>> = kept
            .iter()
            .map(|c| c.iter().map(number).collect())
            .collect();
        // A group per clause (the clauses share no text): the scan stops once every clause has a
        // text.
        let groups: Vec<u16> = (0..texts.len())
            .map(|i| {
                let i = u16::try_from(i).unwrap_or(0);
                let k = clauses.iter().position(|c| c.contains(&i)).unwrap_or(0);
                u16::try_from(k).unwrap_or(0)
            })
            .collect();
        let buckets: Vec<u8> = (0..texts.len())
            .map(|i| u8::try_from(i % 8).unwrap_or(0))
            .collect();
        let Ok(dfa) = literals::build(&texts, &groups, &buckets) else {
            return Ok(None);
        };
        let Ok(scan) = u16::try_from(scans.len()) else {
            return Ok(None);
        };
        scans.push(Scan {
            field: Some(field),
            dfa,
        });
        Ok(Some(Gate { scan, clauses }))
    }

    /// Where `(field, pattern)` is among the gathered patterns.
    fn position(&self, field: &Option<String>, pattern: &Pattern) -> (usize, usize) {
        let t = self
            .patterns
            .iter()
            .position(|(f, _)| f == field)
            .expect("gathered");
        let p = self.patterns[t]
            .1
            .iter()
            .position(|q| q == pattern)
            .expect("gathered");
        (t, p)
    }

    /// Per target, per pattern: its group. The text tests that are direct operands of one `or`
    /// (the values of a list, the selections of a `1 of`), each used only there, form a group: once
    /// one of them matched, the others cannot change the result. Every other pattern is a group of
    /// its own.
    fn groups(&self, roots: &[&Node]) -> Vec<Vec<usize>> {
        fn uses(node: &Node, l: &Lowerer, count: &mut HashMap<(usize, usize), usize>) {
            match node {
                Node::And(v) | Node::Or(v) => v.iter().for_each(|n| uses(n, l, count)),
                Node::Not(n) => uses(n, l, count),
                Node::Text { field, pattern } => {
                    *count.entry(l.position(field, pattern)).or_default() += 1;
                }
                _ => {}
            }
        }
        // The texts of an `or`, through the `or`s directly under it (any of them matching makes
        // it true); what is under its other operands goes to their own lists.
        fn members(
            v: &[Node],
            l: &Lowerer,
            list: &mut Vec<(usize, usize)>,
            out: &mut Vec<Vec<(usize, usize)>>,
        ) {
            for n in v {
                match n {
                    Node::Text { field, pattern } => list.push(l.position(field, pattern)),
                    Node::Or(w) => members(w, l, list, out),
                    _ => ors(n, l, out),
                }
            }
        }
        fn ors(node: &Node, l: &Lowerer, out: &mut Vec<Vec<(usize, usize)>>) {
            match node {
                Node::Or(v) => {
                    let mut list = Vec::new();
                    members(v, l, &mut list, out);
                    out.push(list);
                }
                Node::And(v) => v.iter().for_each(|n| ors(n, l, out)),
                Node::Not(n) => ors(n, l, out),
                _ => {}
            }
        }
        let mut count = HashMap::new();
        let mut lists = Vec::new();
        for root in roots {
            uses(root, self, &mut count);
            ors(root, self, &mut lists);
        }
        let mut next = 0;
        let mut group: Vec<Vec<usize>> = self
            .patterns
            .iter()
            .map(|(_, ps)| vec![usize::MAX; ps.len()])
            .collect();
        for list in lists {
            let members: Vec<_> = list.into_iter().filter(|k| count[k] == 1).collect();
            if members.len() > 1 {
                for (t, p) in members {
                    group[t][p] = next;
                }
                next += 1;
            }
        }
        for row in &mut group {
            for g in row.iter_mut().filter(|g| **g == usize::MAX) {
                *g = next;
                next += 1;
            }
        }
        group
    }

    /// Builds the automata; returns them and, per target and pattern, where it ended up.
    #[allow(clippy::type_complexity, reason = "a local table")]
    fn build_scans(
        &mut self,
        groups: &[Vec<usize>],
    ) -> Result<(Vec<Scan<'static>>, Vec<Vec<Slot>>), SigmaError> {
        let mut scans = Vec::new();
        let mut slots = Vec::new();
        let targets = std::mem::take(&mut self.patterns);
        for (t, (field, patterns)) in targets.iter().enumerate() {
            let pattern_groups = &groups[t];
            let field_id = field.as_deref().map(|f| self.field(f)).transpose()?;
            let mut groups: HashMap<Mode, Vec<(usize, Hir)>> = HashMap::new();
            for (i, p) in patterns.iter().enumerate() {
                let (mode, hir) = if field.is_some() {
                    placed(p)
                } else {
                    (Mode::Unanchored, unanchored(p))
                };
                groups.entry(mode).or_default().push((i, hir));
            }
            let mut at = vec![(0u16, 0u16); patterns.len()];
            for mode in [Mode::Anchored, Mode::Reverse, Mode::Unanchored] {
                let Some(group) = groups.remove(&mode) else {
                    continue;
                };
                let built = if mode == Mode::Unanchored {
                    // Case-insensitive literals as an Aho-Corasick automaton: alone, or beside the
                    // other patterns when there are many of them (a general determinization with
                    // many unanchored literals is slow and large), or when the one automaton of
                    // both would be too large (rather than halves of the list that each carry the
                    // product of literals and wildcards).
                    let (lits, rest): (Vec<_>, Vec<_>) = group
                        .into_iter()
                        .partition(|(i, _)| plain_literal(&patterns[*i]).is_some());
                    let together =
                        if !lits.is_empty() && !rest.is_empty() && lits.len() <= MANY_LITERALS {
                            let all: Vec<_> =
                                lits.iter().cloned().chain(rest.iter().cloned()).collect();
                            build_one(&all, mode, patterns, pattern_groups, field.as_deref())?
                        } else {
                            None
                        };
                    // The two apart when the one automaton of both is the product of their
                    // states: past the size that gets rows of 256 entries it steps every byte
                    // through its byte classes, and the start filter of both stops wherever
                    // either may start (a wildcard's or a regex's first byte, often a space or a
                    // `-`), where apart the literals' own filter skips most of a field and the
                    // rest's scan stops once its groups are decided.
                    let apart = || -> Result<Vec<_>, SigmaError> {
                        let mut out = Vec::new();
                        if !lits.is_empty() {
                            out.extend(literal_build(
                                &lits,
                                patterns,
                                pattern_groups,
                                field.as_deref(),
                            )?);
                        }
                        if !rest.is_empty() {
                            out.extend(split_build(
                                &rest,
                                mode,
                                patterns,
                                pattern_groups,
                                field.as_deref(),
                            )?);
                        }
                        Ok(out)
                    };
                    match together {
                        Some(one) if one.0.states() > BYTE_ROWS_UP_TO => {
                            let parts = apart()?;
                            let sum: usize = parts.iter().map(|(d, _)| d.states()).sum();
                            if parts.len() <= 2
                                && parts.iter().all(|(d, _)| d.states() <= BYTE_ROWS_UP_TO)
                                && sum.saturating_mul(2) <= one.0.states()
                            {
                                parts
                            } else {
                                vec![one]
                            }
                        }
                        Some(one) => vec![one],
                        None => apart()?,
                    }
                } else {
                    split_build(&group, mode, patterns, pattern_groups, field.as_deref())?
                };
                for (dfa, members) in built {
                    let scan = u16::try_from(scans.len()).map_err(|_| SigmaError::TooLarge {
                        what: "the number of automata",
                        size: scans.len() + 1,
                        limit: usize::from(u16::MAX),
                    })?;
                    for (k, i) in members.into_iter().enumerate() {
                        at[i] = (scan, u16::try_from(k).unwrap_or(u16::MAX));
                    }
                    scans.push(Scan {
                        field: field_id,
                        dfa,
                    });
                }
            }
            slots.push(at);
        }
        self.patterns = targets;
        Ok((scans, slots))
    }

    fn expr(&mut self, node: &Node, slots: &[Vec<Slot>]) -> Result<Expr, SigmaError> {
        Ok(match node {
            Node::True => Expr::True,
            Node::False => Expr::False,
            Node::And(v) => Expr::And(
                v.iter()
                    .map(|n| self.expr(n, slots))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Or(v) => Expr::Or(
                v.iter()
                    .map(|n| self.expr(n, slots))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Not(n) => Expr::Not(Box::new(self.expr(n, slots)?)),
            Node::Kind(k) => Expr::Kind(*k),
            Node::Text { field, pattern } => {
                let (t, p) = self.position(field, pattern);
                let (scan, pattern) = slots[t][p];
                Expr::Match { scan, pattern }
            }
            Node::Check { field, check } => {
                let field = self.field(field)?;
                let check = match check {
                    Check::Cidr {
                        network,
                        prefix,
                        v4,
                    } => EvalCheck::Cidr {
                        network: *network,
                        prefix: *prefix,
                        v4: *v4,
                    },
                    Check::Num { op, value } => EvalCheck::Num {
                        op: *op,
                        value: *value,
                    },
                    Check::Null => EvalCheck::Null,
                    Check::Exists(b) => EvalCheck::Exists(*b),
                    Check::FieldRef { other, how, cased } => EvalCheck::FieldRef {
                        other: self.field(other)?,
                        how: *how,
                        cased: *cased,
                    },
                };
                Expr::Check { field, check }
            }
        })
    }
}

/// A gate of more literals than this is not worth its pass.
const MAX_GATE: usize = 16;

/// Beside other patterns on one field, this many case-insensitive literals get an automaton of
/// their own.
const MANY_LITERALS: usize = 64;

/// The text of a case-insensitive `contains` literal.
fn plain_literal(p: &Pattern) -> Option<&str> {
    match p {
        Pattern::Literal {
            position: Position::Contains,
            text,
            cased: false,
        } => Some(text),
        _ => None,
    }
}

/// [`split_build`] for case-insensitive literals, built as one Aho-Corasick automaton (split in
/// two while too large; given to the general construction when a literal has too many spellings).
fn literal_build(
    group: &[(usize, Hir)],
    patterns: &[Pattern],
    groups: &[usize],
    field: Option<&str>,
) -> Result<Vec<(rulebox_sigma_eval::Dfa<'static>, Vec<usize>)>, SigmaError> {
    let texts: Vec<&str> = group
        .iter()
        .filter_map(|(i, _)| plain_literal(&patterns[*i]))
        .collect();
    let members: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
    let (local, buckets) = local_groups(&members, groups, patterns);
    match literals::build(&texts, &local, &buckets) {
        Ok(dfa) => Ok(vec![(dfa, group.iter().map(|(i, _)| *i).collect())]),
        Err(BuildError::TooLarge) if group.len() > 1 => {
            let (a, b) = group.split_at(group.len() / 2);
            let mut out = literal_build(a, patterns, groups, field)?;
            out.extend(literal_build(b, patterns, groups, field)?);
            Ok(out)
        }
        Err(_) => split_build(group, Mode::Unanchored, patterns, groups, field),
    }
}

/// The groups of an automaton's `members` (pattern indices of the target, in the automaton's
/// order), numbered from 0 in order of appearance, and each member's [`Pairs`] bucket
/// (`rulebox_sigma_eval::Starts`): with 8 groups or more, the largest groups first, one bucket
/// each in turn; with fewer, each group gets buckets in proportion to its size and spreads its
/// patterns over them by first character, so a bucket is both precise and soon of no matter.
fn local_groups(members: &[usize], groups: &[usize], patterns: &[Pattern]) -> (Vec<u16>, Vec<u8>) {
    let mut number: HashMap<usize, u16> = HashMap::new();
    let mut sizes: Vec<usize> = Vec::new();
    let local: Vec<u16> = members
        .iter()
        .map(|&i| {
            let n = u16::try_from(number.len()).unwrap_or(u16::MAX);
            let g = *number.entry(groups[i]).or_insert(n);
            if usize::from(g) == sizes.len() {
                sizes.push(0);
            }
            sizes[usize::from(g)] += 1;
            g
        })
        .collect();
    let mut by_size: Vec<usize> = (0..sizes.len()).collect();
    by_size.sort_by_key(|&g| std::cmp::Reverse(sizes[g]));
    // Per group: its first bucket and how many it has.
    let mut span = vec![(0usize, 1usize); sizes.len()];
    if sizes.len() >= 8 {
        for (k, cluster) in share_buckets(members, &local, patterns, &by_size)
            .iter()
            .enumerate()
        {
            for &g in cluster {
                span[g] = (k % 8, 1);
            }
        }
    } else {
        let mut spare = 8 - sizes.len();
        let total: usize = sizes.iter().sum();
        let mut counts = vec![1usize; sizes.len()];
        for &g in &by_size {
            let extra = (sizes[g] * (8 - sizes.len()))
                .div_ceil(total.max(1))
                .min(spare);
            let extra = extra.min(sizes[g].saturating_sub(1));
            counts[g] += extra;
            spare -= extra;
        }
        let mut at = 0;
        for g in 0..sizes.len() {
            span[g] = (at, counts[g]);
            at += counts[g];
        }
    }
    // Within a group's buckets: one-character literals apart (they let any second byte through),
    // the others in runs of first characters, so a bucket's first, second and third bytes belong
    // to few literals.
    let key = |i: usize| -> (bool, u8) {
        let text = match &patterns[i] {
            Pattern::Literal { text, .. } => text.as_str(),
            _ => "",
        };
        let first = text.bytes().next().map_or(0, |b| b.to_ascii_lowercase());
        (text.chars().nth(1).is_some(), first)
    };
    let mut buckets = vec![0u8; members.len()];
    for (g, &(at, n)) in span.iter().enumerate() {
        let mut mine: Vec<usize> = (0..members.len())
            .filter(|&k| usize::from(local[k]) == g)
            .collect();
        mine.sort_by_key(|&k| key(members[k]));
        let short = mine.iter().filter(|&&k| !key(members[k]).0).count();
        for (rank, &k) in mine.iter().enumerate() {
            let slot = if n == 1 || (short > 0 && rank < short) {
                0
            } else {
                let (rest, pos) = if short > 0 {
                    (n - 1, rank - short)
                } else {
                    (n, rank)
                };
                let per = (mine.len() - short).div_ceil(rest);
                (if short > 0 { 1 } else { 0 }) + pos / per.max(1)
            };
            buckets[k] = u8::try_from(at + slot.min(n - 1)).unwrap_or(0);
        }
    }
    (local, buckets)
}

/// With more groups than the 8 buckets of a start filter: which groups share one. A bucket goes on
/// stopping the skip while any of its groups still matters, so a group sharing with one that never
/// matches goes on stopping it after it matched (a `powershell` found in the first bytes of a long
/// command line, then in every few bytes after). Groups whose patterns begin with the same letter
/// share first (text that stops the skip for one mostly stops it for the other anyway); then, while
/// more than 8 are left, the largest groups take the buckets in turn. `by_size`: the groups,
/// largest first.
fn share_buckets(
    members: &[usize],
    local: &[u16],
    patterns: &[Pattern],
    by_size: &[usize],
) -> Vec<Vec<usize>> {
    // Per group, the first characters (folded) of its literal patterns.
    let mut firsts: Vec<Vec<u8>> = vec![Vec::new(); by_size.len()];
    for (k, &i) in members.iter().enumerate() {
        if let Pattern::Literal { text, .. } = &patterns[i]
            && let Some(b) = text.bytes().next()
        {
            let f = &mut firsts[usize::from(local[k])];
            let b = b.to_ascii_lowercase();
            if !f.contains(&b) {
                f.push(b);
            }
        }
    }
    // Clusters in size order, each with its first characters.
    let mut clusters: Vec<(Vec<usize>, Vec<u8>)> = by_size
        .iter()
        .map(|&g| (vec![g], firsts[g].clone()))
        .collect();
    while clusters.len() > 8 {
        // The pair beginning alike most (the earliest such pair on ties).
        let mut best: Option<(usize, usize, usize)> = None;
        for a in 0..clusters.len() {
            for b in a + 1..clusters.len() {
                let shared = clusters[a]
                    .1
                    .iter()
                    .filter(|c| clusters[b].1.contains(c))
                    .count();
                if shared > 0 && best.is_none_or(|(_, _, n)| shared > n) {
                    best = Some((a, b, shared));
                }
            }
        }
        let Some((a, b, _)) = best else {
            break;
        };
        let (groups, chars) = clusters.remove(b);
        clusters[a].0.extend(groups);
        for c in chars {
            if !clusters[a].1.contains(&c) {
                clusters[a].1.push(c);
            }
        }
    }
    clusters.into_iter().map(|(g, _)| g).collect()
}

/// Builds the automaton of `group`; if it is too large, the two halves separately: halves of its
/// groups (a group's members stay together, so that they stay one pattern: `automaton::build`),
/// or of its patterns when they are one group. Returns each automaton with the pattern indices it
/// answers, in its pattern order.
fn split_build(
    group: &[(usize, Hir)],
    mode: Mode,
    patterns: &[Pattern],
    groups: &[usize],
    field: Option<&str>,
) -> Result<Vec<(rulebox_sigma_eval::Dfa<'static>, Vec<usize>)>, SigmaError> {
    if let Some(one) = build_one(group, mode, patterns, groups, field)? {
        return Ok(vec![one]);
    }
    let mut distinct: Vec<usize> = Vec::new();
    for (i, _) in group {
        if !distinct.contains(&groups[*i]) {
            distinct.push(groups[*i]);
        }
    }
    let (a, b): (Vec<_>, Vec<_>) = if distinct.len() > 1 {
        let first = &distinct[..distinct.len() / 2];
        group
            .iter()
            .cloned()
            .partition(|(i, _)| first.contains(&groups[*i]))
    } else {
        let (a, b) = group.split_at(group.len() / 2);
        (a.to_vec(), b.to_vec())
    };
    let mut out = split_build(&a, mode, patterns, groups, field)?;
    out.extend(split_build(&b, mode, patterns, groups, field)?);
    Ok(out)
}

/// The one automaton of `group` with the pattern indices it answers, or `None` when it would be
/// too large and `group` can be split.
#[allow(clippy::type_complexity, reason = "a local table")]
fn build_one(
    group: &[(usize, Hir)],
    mode: Mode,
    patterns: &[Pattern],
    groups: &[usize],
    field: Option<&str>,
) -> Result<Option<(rulebox_sigma_eval::Dfa<'static>, Vec<usize>)>, SigmaError> {
    let hirs: Vec<Hir> = group.iter().map(|(_, h)| h.clone()).collect();
    let members: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
    let (local, buckets) = local_groups(&members, groups, patterns);
    // A keyword scan reports where each keyword first matched: its patterns stay apart.
    let merge: &[u16] = if field.is_some() { &local } else { &[] };
    match build(&hirs, mode, &buckets, merge) {
        Ok(mut dfa) => {
            dfa.groups = local;
            dfa.buckets = buckets;
            Ok(Some((dfa, members)))
        }
        Err(BuildError::TooLarge) if group.len() > 1 => Ok(None),
        Err(e) => {
            let pattern = describe(&patterns[group[0].0]);
            let field = field.unwrap_or("(keywords)").to_owned();
            Err(match e {
                BuildError::TooLarge => SigmaError::Regex {
                    field,
                    pattern,
                    problem: format!(
                        "its automaton needs more than {} transitions",
                        rulebox_sigma_eval::MAX_TRANSITIONS
                    ),
                },
                BuildError::Unsupported(problem) => SigmaError::Regex {
                    field,
                    pattern,
                    problem,
                },
            })
        }
    }
}

fn describe(p: &Pattern) -> String {
    match p {
        Pattern::Literal { text, .. } => text.clone(),
        Pattern::Glob { parts, .. } => parts
            .iter()
            .map(|g| match g {
                Glob::Lit(s) => s.as_str(),
                Glob::Any => "*",
                Glob::One => "?",
            })
            .collect(),
        Pattern::Regex { source, .. } => source.clone(),
    }
}

fn glob_hir(parts: &[Glob], cased: bool) -> Vec<Hir> {
    parts
        .iter()
        .map(|g| match g {
            Glob::Lit(s) => case::literal(s, cased),
            Glob::Any => case::any_text(),
            Glob::One => case::any_char(),
        })
        .collect()
}

/// Where a pattern on a named field is decided, and its expression there.
fn placed(p: &Pattern) -> (Mode, Hir) {
    match p {
        Pattern::Literal {
            position,
            text,
            cased,
        } => {
            let lit = case::literal(text, *cased);
            match position {
                Position::Exact => (Mode::Anchored, Hir::concat(vec![lit, case::end()])),
                Position::Prefix => (Mode::Anchored, lit),
                Position::Suffix => (Mode::Reverse, lit),
                Position::Contains => (Mode::Unanchored, lit),
            }
        }
        Pattern::Glob { parts, cased } => {
            let first_any = parts.first() == Some(&Glob::Any);
            let last_any = parts.last() == Some(&Glob::Any);
            let anys = parts.iter().filter(|g| **g == Glob::Any).count();
            let bounded_head = !first_any && anys == usize::from(last_any);
            let bounded_tail = first_any && !last_any && anys == 1;
            if bounded_head {
                // `a?b` or `a?b*`: decided within its length from the start.
                let body = if last_any {
                    &parts[..parts.len() - 1]
                } else {
                    parts
                };
                let mut hir = glob_hir(body, *cased);
                if !last_any {
                    hir.push(case::end());
                }
                (Mode::Anchored, Hir::concat(hir))
            } else if bounded_tail {
                // `*a?b`: decided within its length from the end.
                (Mode::Reverse, Hir::concat(glob_hir(&parts[1..], *cased)))
            } else {
                (Mode::Unanchored, unanchored(p))
            }
        }
        Pattern::Regex { .. } => (Mode::Unanchored, unanchored(p)),
    }
}

/// `hir` for a search that only asks whether it matches somewhere: a repetition at its start or its
/// end needs only its minimum (`x[0-9]{1,11}` is found exactly where `x[0-9]` is), which keeps
/// the automaton small and its match states few. `head`/`tail`: whether `hir` is at the start/end.
fn for_search(hir: &Hir, head: bool, tail: bool) -> Hir {
    match hir.kind() {
        HirKind::Repetition(r) if (head || tail) && r.max != Some(r.min) => {
            Hir::repetition(Repetition {
                min: r.min,
                max: Some(r.min),
                greedy: r.greedy,
                sub: r.sub.clone(),
            })
        }
        HirKind::Capture(c) => for_search(&c.sub, head, tail),
        HirKind::Alternation(alts) => {
            Hir::alternation(alts.iter().map(|a| for_search(a, head, tail)).collect())
        }
        HirKind::Concat(items) => {
            let last = items.len().saturating_sub(1);
            Hir::concat(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| for_search(item, head && i == 0, tail && i == last))
                    .collect(),
            )
        }
        _ => hir.clone(),
    }
}

/// A pattern's expression for an unanchored scan: anchored with `\A` / `\z` where it must be.
fn unanchored(p: &Pattern) -> Hir {
    match p {
        Pattern::Literal {
            position,
            text,
            cased,
        } => {
            let lit = case::literal(text, *cased);
            match position {
                Position::Exact => Hir::concat(vec![case::start(), lit, case::end()]),
                Position::Prefix => Hir::concat(vec![case::start(), lit]),
                Position::Suffix => Hir::concat(vec![lit, case::end()]),
                Position::Contains => lit,
            }
        }
        Pattern::Glob { parts, cased } => {
            let mut body: &[Glob] = parts;
            let first_any = body.first() == Some(&Glob::Any);
            if first_any {
                body = &body[1..];
            }
            let last_any = body.last() == Some(&Glob::Any);
            if last_any {
                body = &body[..body.len() - 1];
            }
            let mut hir = Vec::new();
            if !first_any {
                hir.push(case::start());
            }
            hir.extend(glob_hir(body, *cased));
            if !last_any {
                hir.push(case::end());
            }
            Hir::concat(hir)
        }
        Pattern::Regex { hir, .. } => for_search(hir, true, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_need_only_the_minimum_of_an_outer_repetition() {
        let re = |p: &str| crate::regex::compile_regex("F", p, (false, false, false)).unwrap();
        assert_eq!(for_search(&re(r"x[0-9]{1,11}"), true, true), re(r"x[0-9]"));
        assert_eq!(for_search(&re(r"[0-9]{2,}x"), true, true), re(r"[0-9]{2}x"));
        assert_eq!(for_search(&re(r".{1000,}"), true, true), re(r".{1000}"));
        assert_eq!(for_search(&re(r"a(?:b|c+)"), true, true), re(r"a(?:b|c)"));
        // Not inside, and not before an anchor.
        assert_eq!(
            for_search(&re(r"a[0-9]{1,3}b"), true, true),
            re(r"a[0-9]{1,3}b")
        );
        assert_eq!(for_search(&re(r"a[0-9]+$"), true, true), re(r"a[0-9]+$"));
    }

    #[test]
    fn spaced_names() {
        assert_eq!(spaced("ThreatName").as_deref(), Some("Threat Name"));
        assert_eq!(spaced("NewValue").as_deref(), Some("New Value"));
        assert_eq!(spaced("Path"), None);
        assert_eq!(spaced("Data"), None);
        assert_eq!(spaced("Sha256Hash").as_deref(), Some("Sha256 Hash"));
        assert_eq!(spaced("IPAddress"), None);
    }

    #[test]
    fn patterns_go_where_they_are_decided() {
        let lit = |position, text: &str| Pattern::Literal {
            position,
            text: text.into(),
            cased: false,
        };
        assert_eq!(placed(&lit(Position::Exact, "a")).0, Mode::Anchored);
        assert_eq!(placed(&lit(Position::Prefix, "a")).0, Mode::Anchored);
        assert_eq!(placed(&lit(Position::Suffix, "a")).0, Mode::Reverse);
        assert_eq!(placed(&lit(Position::Contains, "a")).0, Mode::Unanchored);
        let glob = |parts: Vec<Glob>| Pattern::Glob {
            parts,
            cased: false,
        };
        let l = || Glob::Lit("x".into());
        assert_eq!(placed(&glob(vec![l(), Glob::One, l()])).0, Mode::Anchored);
        assert_eq!(
            placed(&glob(vec![l(), Glob::One, l(), Glob::Any])).0,
            Mode::Anchored
        );
        assert_eq!(
            placed(&glob(vec![Glob::Any, l(), Glob::One, l()])).0,
            Mode::Reverse
        );
        assert_eq!(placed(&glob(vec![l(), Glob::Any, l()])).0, Mode::Unanchored);
        assert_eq!(
            placed(&glob(vec![Glob::Any, l(), Glob::Any, l(), Glob::Any])).0,
            Mode::Unanchored
        );
    }
}
