//! Evaluating a [`Program`] on an event.
//!
//! Per event, the evaluator resolves each field the program needs once, runs each automaton at most
//! once over its field's value (lazily: a condition that fails early scans nothing more), and
//! evaluates the condition over the pattern bits the scans set. Nothing is allocated per event.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::IpAddr;

use rulebox_sdk::{Detections, Event, EventKind, EventKinds, EventView, Severity, Value};

use crate::dfa::{Automaton, ScanState};
use crate::fold::fold_case;
use crate::node::Node;
use crate::program::{Check, FieldSpec, Gate, Need, NumOp, Program, ProgramError, RefOp};

/// The number of event kinds (the slot table's width).
pub(crate) const KINDS: usize = EventKind::ALL.len();

/// No body slot.
pub(crate) const NO_SLOT: u8 = u8::MAX;

/// Field values remembered per event; a program with more fields resolves the rest on each use.
const CACHED: usize = 32;

/// Evaluates one program on events; keeps its scratch space between events.
#[derive(Debug, Clone)]
pub struct Evaluator<'a> {
    program: Compiled<'a>,
    state: State,
}

#[derive(Debug, Clone)]
struct Compiled<'a> {
    id: String,
    title: String,
    version: String,
    severity: Severity,
    kinds: EventKinds,
    fields: Vec<FieldSpec>,
    /// Per field, per event kind: the body slot of the field's first name, or [`NO_SLOT`].
    slots: Vec<[u8; KINDS]>,
    scans: Vec<Scan<'a>>,
    guard: Node,
    condition: Node,
    report: Vec<u16>,
    gate: Option<Gate>,
    needs: Vec<Vec<Need>>,
}

#[derive(Debug, Clone)]
struct Scan<'a> {
    field: Option<u16>,
    automaton: Automaton<'a>,
}

#[derive(Debug, Clone, Default)]
struct State {
    /// Per automaton: whether it ran on this event.
    ran: Vec<bool>,
    /// Per automaton: what it found on this event.
    found: Vec<ScanState>,
    /// Per keyword automaton and pattern: the field it first matched in.
    keyword_at: Vec<Vec<Loc>>,
    /// Bits before a keyword scan of one field, to tell which patterns it found.
    before: Vec<u64>,
    fold: String,
    fold2: String,
    /// The fields a detection reports, in order.
    reported: Vec<Loc>,
    /// The patterns of a [`Node::Matches`] that matched, while a detection collects its fields.
    patterns: Vec<u16>,
    /// Encoding buffer for [`Evaluator::matches_event`].
    encoded: Vec<u8>,
    /// The bytes handed to automata on this event.
    scanned: usize,
}

/// Where a reported value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Loc {
    /// Not known.
    #[default]
    None,
    /// A program field.
    Field(u16),
    /// A body slot of the event.
    Body(u8),
    /// An extra field of the event.
    Extra(u16),
}

impl<'a> Evaluator<'a> {
    /// An evaluator for the encoded program `bytes`: [`Program::from_bytes`], then [`new`](Self::new)
    /// without checking twice. Its automata's tables stay in `bytes`.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Evaluator<'a>, ProgramError> {
        Ok(Evaluator::prepare(Program::from_bytes(bytes)?))
    }

    /// An evaluator that owns its tables, for the encoded program `bytes` (which it does not keep):
    /// for the pack, whose rule data lives only during its load. Its automata scan through their
    /// byte classes: a pack gives the faster rows of 256 entries after it has every rule, to the
    /// automata that need them most within its budget.
    pub fn from_bytes_owned(bytes: &[u8]) -> Result<Evaluator<'static>, ProgramError> {
        Ok(Evaluator::prepare_within(
            Program::from_bytes(bytes)?.into_owned(),
            &mut 0,
        ))
    }

    /// An evaluator for the encoded program `bytes`, whose automata's tables stay in `bytes` (the
    /// pack's kept rule data), without rows of 256 entries as for
    /// [`from_bytes_owned`](Self::from_bytes_owned).
    pub fn from_bytes_within(bytes: &'a [u8]) -> Result<Evaluator<'a>, ProgramError> {
        Ok(Evaluator::prepare_within(
            Program::from_bytes(bytes)?,
            &mut 0,
        ))
    }

    /// An evaluator for `program`, after checking it ([`Program::check`]).
    pub fn new(program: Program<'a>) -> Result<Evaluator<'a>, ProgramError> {
        program.check()?;
        Ok(Evaluator::prepare(program))
    }

    /// An evaluator for a checked `program`.
    fn prepare(program: Program<'a>) -> Evaluator<'a> {
        let mut unlimited = usize::MAX;
        Evaluator::prepare_within(program, &mut unlimited)
    }

    /// An evaluator for a checked `program`, its automata's byte rows within `budget` bytes.
    fn prepare_within(program: Program<'a>, budget: &mut usize) -> Evaluator<'a> {
        let slots = program.fields.iter().map(slot_row).collect();
        let mut scans = Vec::with_capacity(program.scans.len());
        let mut state = State::default();
        for scan in program.scans {
            let automaton = Automaton::prepare_within(scan.dfa, budget);
            let patterns = usize::from(automaton.patterns());
            state.found.push(automaton.state());
            state.keyword_at.push(if scan.field.is_none() {
                vec![Loc::None; patterns]
            } else {
                Vec::new()
            });
            scans.push(Scan {
                field: scan.field,
                automaton,
            });
        }
        state.ran = vec![false; scans.len()];
        Evaluator {
            program: Compiled {
                id: program.id,
                title: program.title,
                version: program.version,
                severity: program.severity,
                kinds: program.kinds,
                fields: program.fields,
                slots,
                scans,
                guard: Node::of(program.guard),
                condition: Node::of(program.condition),
                report: program.report,
                gate: program.gate,
                needs: program.needs,
            },
            state,
        }
    }

    /// The automata, for a pack that gives some of them rows of 256 entries after load.
    pub(crate) fn automata_mut(&mut self) -> impl Iterator<Item = &mut Automaton<'a>> {
        self.program.scans.iter_mut().map(|s| &mut s.automaton)
    }

    /// Per automaton without rows of 256 entries that may have them: its index, how soon it
    /// should get them ([`Automaton::rows_priority`]) and their size.
    pub(crate) fn rows_wanted(&self) -> impl Iterator<Item = (usize, u8, usize)> + '_ {
        self.program.scans.iter().enumerate().filter_map(|(k, s)| {
            let a = &s.automaton;
            Some((k, a.rows_priority(), a.rows_size()?))
        })
    }

    /// The bytes of the rows of 256 entries its automata without them could have (each at most
    /// [`BYTE_ROWS_UP_TO`](crate::BYTE_ROWS_UP_TO) states): what a pack's byte-row budget must
    /// hold for this rule to scan as fast in the pack as alone.
    pub fn byte_rows_wanted(&self) -> usize {
        self.rows_wanted().map(|(_, _, size)| size).sum()
    }

    /// Natively, the most candidates the sandbox's skip of one of its automata would turn down
    /// on `text` ([`Automaton::skip_misses`]): for tools that tell which rules step through a field
    /// in the sandbox where the native scan skips it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn skip_misses(&self, text: &[u8]) -> usize {
        self.program
            .scans
            .iter()
            .map(|s| s.automaton.skip_misses(text))
            .max()
            .unwrap_or(0)
    }

    /// How many of its automata read rows of 256 entries (in a pack, those the pack's byte-row
    /// budget gave them; alone, every one small enough).
    pub fn automata_with_byte_rows(&self) -> usize {
        self.program
            .scans
            .iter()
            .filter(|s| s.automaton.has_byte_rows())
            .count()
    }

    /// The rule id.
    pub fn id(&self) -> &str {
        &self.program.id
    }

    /// The rule title (a detection's title).
    pub fn title(&self) -> &str {
        &self.program.title
    }

    /// The rule version.
    pub fn version(&self) -> &str {
        &self.program.version
    }

    /// The rule's severity.
    pub fn severity(&self) -> Severity {
        self.program.severity
    }

    /// The event kinds the rule subscribes to.
    pub fn kinds(&self) -> EventKinds {
        self.program.kinds
    }

    /// The fields the program reads.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.program.fields
    }

    /// What an event must contain for the rule to match ([`Program::needs`]).
    pub fn needs(&self) -> &[Vec<Need>] {
        &self.program.needs
    }

    /// Whether the rule matches `event` (its kind included), read in place as the host encoded it.
    pub fn matches(&mut self, event: &EventView<'_>) -> bool {
        let mut run = Run::new(&self.program, &mut self.state, event);
        run.hit()
    }

    /// If the rule matches `event`, adds its detection to `out` (titled with the rule's title,
    /// carrying the fields the rule lists, else the fields its condition matched) and returns `true`.
    pub fn detect(&mut self, event: &EventView<'_>, out: &mut Detections) -> bool {
        let mut run = Run::new(&self.program, &mut self.state, event);
        if !run.hit() {
            return false;
        }
        run.report(out);
        true
    }

    /// How many bytes of field values the automata were handed on the last event (every scan of
    /// every value it ran, skipped stretches included): what an event costs the evaluator, which
    /// spends a few instructions per such byte and a bounded amount on everything else. For tests
    /// and tools that bound a rule's cost without running it in the sandbox.
    pub fn bytes_scanned(&self) -> usize {
        self.state.scanned
    }

    /// How many of those bytes the automata read one at a time through their tables on the last
    /// event (the rest the start filter skipped, several at a time): with [`bytes_scanned`](Self::bytes_scanned),
    /// what the event cost. Counted natively only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn bytes_stepped(&self) -> usize {
        self.per_scan(ScanState::stepped)
    }

    /// How many skips the automata began on the last event (each costs a bounded amount beyond
    /// the bytes it passes over: its setup, the check of where it stopped, the way back into the
    /// table). Counted natively only, like [`bytes_stepped`](Self::bytes_stepped).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn skips(&self) -> usize {
        self.per_scan(ScanState::skips)
    }

    /// The sum of `what` over the scans that ran on the last event.
    #[cfg(not(target_arch = "wasm32"))]
    fn per_scan(&self, what: fn(&ScanState) -> usize) -> usize {
        self.state
            .ran
            .iter()
            .zip(&self.state.found)
            .filter(|(ran, _)| **ran)
            .map(|(_, f)| what(f))
            .sum()
    }

    /// Whether the rule matches a typed `event`: encodes it as the host would, then [`matches`](Self::matches).
    /// For tests and tools; an event that does not encode matches nothing.
    pub fn matches_event(&mut self, event: &Event<'_>) -> bool {
        let mut bytes = core::mem::take(&mut self.state.encoded);
        bytes.clear();
        let hit = event.encode_into(&mut bytes).is_ok()
            && EventView::new(&bytes).is_ok_and(|view| self.matches(&view));
        self.state.encoded = bytes;
        hit
    }
}

/// A field's value as the evaluator reads it: text as the bytes the host encoded (the automata
/// run on bytes; only the few checks that parse text look at it as UTF-8), or a number or flag.
#[derive(Debug, Clone, Copy)]
enum Val<'e> {
    Text(&'e [u8]),
    Int(u64),
    Bool(bool),
}

impl<'e> From<Value<'e>> for Val<'e> {
    fn from(v: Value<'e>) -> Val<'e> {
        match v {
            Value::Str(s) => Val::Text(s.as_bytes()),
            Value::Int(n) => Val::Int(n),
            Value::Bool(b) => Val::Bool(b),
        }
    }
}

/// A field value resolved for this event, or not looked up yet.
#[derive(Debug, Clone, Copy)]
enum Cached<'e> {
    Unknown,
    Known(Option<Val<'e>>),
}

/// One evaluation: the program, its scratch space, the event and the values resolved so far.
struct Run<'p, 's, 'v, 'e> {
    program: &'p Compiled<'p>,
    state: &'s mut State,
    view: &'v EventView<'e>,
    values: [Cached<'e>; CACHED],
}

impl<'p, 's, 'v, 'e> Run<'p, 's, 'v, 'e> {
    fn new(
        program: &'p Compiled<'p>,
        state: &'s mut State,
        view: &'v EventView<'e>,
    ) -> Run<'p, 's, 'v, 'e> {
        state.ran.fill(false);
        state.scanned = 0;
        Run {
            program,
            state,
            view,
            values: [Cached::Unknown; CACHED],
        }
    }

    fn hit(&mut self) -> bool {
        let p = self.program;
        p.kinds.contains(self.view.kind())
            && self.eval(&p.guard)
            && p.gate.as_ref().is_none_or(|g| self.gate_holds(g))
            && self.eval(&p.condition)
    }

    /// Whether the event has, for every clause of the gate, one of its patterns, or its scan gave
    /// up: the gate only saves the field's other scans, so where its own scan would cost about as
    /// much as they do (text its skips stop in every few bytes), it lets the event through rather
    /// than have the field read twice at that cost.
    fn gate_holds(&mut self, g: &Gate) -> bool {
        let i = usize::from(g.scan);
        if !self.state.ran[i] && !self.run_scan_as(i, true) {
            return true;
        }
        let found = &self.state.found[i];
        g.clauses.iter().all(|c| c.iter().any(|&p| found.found(p)))
    }

    fn eval(&mut self, expr: &Node) -> bool {
        match expr {
            Node::True => true,
            Node::False => false,
            Node::And(v) => v.iter().all(|e| self.eval(e)),
            Node::Or(v) => v.iter().any(|e| self.eval(e)),
            Node::Not(e) => !self.eval(e),
            Node::Kind(kinds) => kinds.contains(self.view.kind()),
            Node::Match { scan, pattern } => self.matched(*scan, *pattern),
            Node::Matches { scan, all, mask } => {
                let found = self.found(*scan);
                if *all {
                    mask.all(found)
                } else {
                    mask.any(found)
                }
            }
            Node::Check { field, check } => self.check(*field, check),
        }
    }

    /// The value of program field `f` (its first name the event has), resolved once per event.
    fn value(&mut self, f: u16) -> Option<Val<'e>> {
        let i = usize::from(f);
        if let Some(Cached::Known(v)) = self.values.get(i) {
            return *v;
        }
        let v = self.resolve(f);
        if let Some(slot) = self.values.get_mut(i) {
            *slot = Cached::Known(v);
        }
        v
    }

    /// The field's value with exactly the meaning of `EventView::field`, for each of the field's
    /// names in turn: a body field that holds a value, else the first extra field of that name,
    /// else the body field's default, else a header field. Text is not checked as UTF-8.
    fn resolve(&self, f: u16) -> Option<Val<'e>> {
        let i = usize::from(f);
        resolve(&self.program.fields[i], &self.program.slots[i], self.view)
    }

    /// Calls `each` with every value of field `f` until it returns `false`: its value, or (for a
    /// field with elements that the event does not have) the elements of the lists flattened under
    /// its names.
    fn each_value(&mut self, f: u16, mut each: impl FnMut(Val<'e>) -> bool) {
        if let Some(v) = self.value(f) {
            each(v);
            return;
        }
        elements(&self.program.fields[usize::from(f)], self.view, each);
    }

    fn matched(&mut self, scan: u16, pattern: u16) -> bool {
        let i = usize::from(scan);
        if !self.state.ran[i] {
            self.run_scan(i);
        }
        self.state.found[i].found(pattern)
    }

    /// The found bits of automaton `scan` on this event (running it first if it has not run).
    fn found(&mut self, scan: u16) -> &[u64] {
        let i = usize::from(scan);
        if !self.state.ran[i] {
            self.run_scan(i);
        }
        self.state.found[i].bits()
    }

    fn run_scan(&mut self, i: usize) {
        self.run_scan_as(i, false);
    }

    /// Runs scan `i`; `quick`: as [`Automaton::scan_quick`] (a field scan only), and `false` when
    /// it gave up.
    fn run_scan_as(&mut self, i: usize, quick: bool) -> bool {
        let program = self.program;
        let scan = &program.scans[i];
        let mut found = core::mem::take(&mut self.state.found[i]);
        scan.automaton.reset(&mut found);
        let mut complete = true;
        match scan.field {
            Some(f) => {
                let mut scanned = 0;
                self.each_value(f, |v| {
                    with_bytes(v, |t| {
                        scanned += t.len();
                        if quick {
                            complete &= scan.automaton.scan_quick(t, &mut found);
                        } else {
                            scan.automaton.scan(t, &mut found);
                        }
                    });
                    complete && !found.finished()
                });
                self.state.scanned += scanned;
            }
            None => self.keywords(i, &scan.automaton, &mut found),
        }
        self.state.found[i] = found;
        self.state.ran[i] = true;
        complete
    }

    /// A keyword automaton over every field of the event (body fields, then extra fields), noting
    /// where each pattern first matched.
    fn keywords(&mut self, i: usize, automaton: &Automaton<'_>, found: &mut ScanState) {
        let view = self.view;
        let state = &mut *self.state;
        state.keyword_at[i].fill(Loc::None);
        let mut one = |loc: Loc, text: &[u8], found: &mut ScanState| {
            state.before.clear();
            state.before.extend_from_slice(found.bits());
            state.scanned += text.len();
            automaton.scan(text, found);
            for (w, (now, was)) in found.bits().iter().zip(&state.before).enumerate() {
                let mut new = now & !was;
                while new != 0 {
                    let p = w * 64 + new.trailing_zeros() as usize;
                    if let Some(at) = state.keyword_at[i].get_mut(p) {
                        *at = loc;
                    }
                    new &= new - 1;
                }
            }
        };
        each_keyword_text(view, |loc, text| {
            if found.finished() {
                return false;
            }
            one(loc, text, found);
            true
        });
    }

    fn check(&mut self, f: u16, check: &Check) -> bool {
        match check {
            Check::Null => !self.any_value(f, non_empty),
            Check::Exists(want) => self.any_value(f, non_empty) == *want,
            Check::Num { op, value: rhs } => self.any_value(f, |v| {
                number(&v).is_some_and(|lhs| match op {
                    NumOp::Lt => lhs < *rhs,
                    NumOp::Lte => lhs <= *rhs,
                    NumOp::Gt => lhs > *rhs,
                    NumOp::Gte => lhs >= *rhs,
                })
            }),
            Check::Cidr {
                network,
                prefix,
                v4,
            } => self.any_value(f, |v| match v {
                Val::Text(text) => in_network(text, network, *prefix, *v4),
                _ => false,
            }),
            Check::FieldRef { other, how, cased } => {
                let (Some(a), Some(b)) = (self.value(f), self.value(*other)) else {
                    return false;
                };
                let state = &mut *self.state;
                let (fold, fold2) = (&mut state.fold, &mut state.fold2);
                with_bytes(a, |a| {
                    with_bytes(b, |b| compare(a, b, *how, *cased, fold, fold2))
                })
            }
        }
    }

    fn any_value(&mut self, f: u16, mut test: impl FnMut(Val<'e>) -> bool) -> bool {
        let mut hit = false;
        self.each_value(f, |v| {
            hit = test(v);
            !hit
        });
        hit
    }

    /// Writes the detection: the listed fields, else the fields the condition matched.
    fn report(&mut self, out: &mut Detections) {
        let program = self.program;
        let mut reported = core::mem::take(&mut self.state.reported);
        reported.clear();
        if program.report.is_empty() {
            self.collect(&program.condition, &mut reported);
        } else {
            reported.extend(program.report.iter().map(|&f| Loc::Field(f)));
        }
        let detection = out.detect(&program.title);
        for loc in &reported {
            let view = self.view;
            match *loc {
                Loc::Field(f) => {
                    let Some(v) = self.first_value(f) else {
                        continue;
                    };
                    let name = program.fields[usize::from(f)]
                        .names
                        .first()
                        .map_or("", String::as_str);
                    with_bytes(v, |t| {
                        detection.field(name, capped(t));
                    });
                }
                Loc::Body(slot) => {
                    let name = view.layout().fields.get(usize::from(slot)).copied();
                    let slot = usize::from(slot);
                    let value = view
                        .text_bytes(slot)
                        .map(Val::Text)
                        .or_else(|| view.slot_value(slot).map(Val::from));
                    if let (Some(name), Some(v)) = (name, value) {
                        with_bytes(v, |t| {
                            detection.field(name, capped(t));
                        });
                    }
                }
                Loc::Extra(k) => {
                    if let Some((name, value)) = view.extra_bytes(usize::from(k)) {
                        detection.field(capped(name), capped(value));
                    }
                }
                Loc::None => {}
            }
        }
        self.state.reported = reported;
    }

    /// The first non-empty value of field `f`, else its value.
    fn first_value(&mut self, f: u16) -> Option<Val<'e>> {
        let mut first = None;
        self.each_value(f, |v| {
            first = Some(v);
            !non_empty(v)
        });
        first
    }

    /// The fields of the tests that made the (true) expression `expr` true: every operand of an
    /// `and`, the true operands of an `or`, nothing under a `not`.
    fn collect(&mut self, expr: &Node, out: &mut Vec<Loc>) {
        let mut push = |loc: Loc| {
            if loc != Loc::None && !out.contains(&loc) {
                out.push(loc);
            }
        };
        match expr {
            Node::And(v) => v.iter().for_each(|e| self.collect(e, out)),
            Node::Or(v) => {
                for e in v {
                    if self.eval(e) {
                        self.collect(e, out);
                    }
                }
            }
            Node::Match { scan, pattern } => {
                if !self.matched(*scan, *pattern) {
                    return;
                }
                push(self.matched_at(*scan, *pattern));
            }
            // Each pattern that matched, in the order of the operands it stands for.
            Node::Matches { scan, mask, .. } => {
                let scan = *scan;
                let mut found = core::mem::take(&mut self.state.patterns);
                found.clear();
                mask.each_found(self.found(scan), |p| found.push(p));
                for &p in &found {
                    push(self.matched_at(scan, p));
                }
                self.state.patterns = found;
            }
            Node::Check { field, check } => {
                let absent = matches!(check, Check::Null | Check::Exists(false));
                if !absent && self.check(*field, check) {
                    push(Loc::Field(*field));
                    if let Check::FieldRef { other, .. } = check {
                        push(Loc::Field(*other));
                    }
                }
            }
            Node::Not(_) | Node::Kind(_) | Node::True | Node::False => {}
        }
    }

    /// Where pattern `pattern` of automaton `scan` (which matched) matched: its field, or for a
    /// keyword automaton the field it first matched in.
    fn matched_at(&self, scan: u16, pattern: u16) -> Loc {
        let i = usize::from(scan);
        match self.program.scans[i].field {
            Some(f) => Loc::Field(f),
            None => self.state.keyword_at[i]
                .get(usize::from(pattern))
                .copied()
                .unwrap_or_default(),
        }
    }
}

/// Per event kind, the body slot of the field's first name, or [`NO_SLOT`].
pub(crate) fn slot_row(spec: &FieldSpec) -> [u8; KINDS] {
    let mut row = [NO_SLOT; KINDS];
    if let Some(name) = spec.names.first() {
        for kind in EventKind::ALL {
            let slot = rulebox_sdk::EventData::layout_of(*kind).slot(name);
            if let Some(slot) = slot.and_then(|s| u8::try_from(s).ok()) {
                row[*kind as usize] = slot;
            }
        }
    }
    row
}

/// A body slot's value, unless it holds its default.
fn body<'e>(view: &EventView<'e>, slot: usize) -> Option<Val<'e>> {
    if slot < view.layout().texts {
        return view
            .text_bytes(slot)
            .filter(|b| !b.is_empty())
            .map(Val::Text);
    }
    match view.slot_value(slot)? {
        Value::Int(n) if n != 0 => Some(Val::Int(n)),
        Value::Bool(true) => Some(Val::Bool(true)),
        _ => None,
    }
}

/// Every value a keyword reads (Sigma keywords: every field of the event), with where it is: the
/// body fields, each as its text or its value, then the extra fields, until `each` returns false.
/// The keyword scans and the prefilter's keyword literals read exactly these.
pub(crate) fn each_keyword_text(view: &EventView<'_>, mut each: impl FnMut(Loc, &[u8]) -> bool) {
    for slot in 0..view.layout().fields.len() {
        let Ok(b) = u8::try_from(slot) else {
            continue;
        };
        let v = match view.text_bytes(slot) {
            Some(text) => Val::Text(text),
            None => match view.slot_value(slot) {
                Some(v) => v.into(),
                None => continue,
            },
        };
        if !with_bytes(v, |t| each(Loc::Body(b), t)) {
            return;
        }
    }
    for k in 0..view.extra_len() {
        let (Some((_, value)), Ok(e)) = (view.extra_bytes(k), u16::try_from(k)) else {
            continue;
        };
        if !each(Loc::Extra(e), value) {
            return;
        }
    }
}

/// The value of the field `spec` (`slots`: its [`slot_row`]) with exactly the meaning of
/// `EventView::field`, for each of the field's names in turn: a body field that holds a value,
/// else the first extra field of that name, else the body field's default, else a header field.
/// Text is not checked as UTF-8.
fn resolve<'e>(spec: &FieldSpec, slots: &[u8; KINDS], view: &EventView<'e>) -> Option<Val<'e>> {
    resolve_with(spec, slots, view, |name| view.extra_named(name))
}

/// [`resolve`], finding an extra field by name with `named` (what `EventView::extra_named` finds).
#[inline(always)]
fn resolve_with<'e>(
    spec: &FieldSpec,
    slots: &[u8; KINDS],
    view: &EventView<'e>,
    named: impl Fn(&[u8]) -> Option<&'e [u8]>,
) -> Option<Val<'e>> {
    resolve_at(spec, slots, view, |name| {
        named(name).map(|v| (Loc::None, v))
    })
    .map(|(v, _)| v)
}

/// [`resolve`], with where the value is: `Loc::Body` when it is a body field's value (exactly
/// what [`each_keyword_text`] reads there), the [`Loc`] `named` gave an extra field, and
/// `Loc::None` for a default or a header field. `named` finds an extra field by name as
/// `EventView::extra_named` does.
#[inline(always)]
fn resolve_at<'e>(
    spec: &FieldSpec,
    slots: &[u8; KINDS],
    view: &EventView<'e>,
    named: impl Fn(&[u8]) -> Option<(Loc, &'e [u8])>,
) -> Option<(Val<'e>, Loc)> {
    for (n, name) in spec.names.iter().enumerate() {
        let slot = if n == 0 {
            let s = slots[view.kind() as usize];
            (s != NO_SLOT).then_some(usize::from(s))
        } else {
            view.layout().slot(name)
        };
        if let Some(s) = slot
            && let Some(v) = body(view, s)
        {
            return Some((v, u8::try_from(s).map_or(Loc::None, Loc::Body)));
        }
        if let Some((loc, value)) = named(name.as_bytes()) {
            return Some((Val::Text(value), loc));
        }
        if let Some(s) = slot {
            return view.slot_value(s).map(|v| (Val::from(v), Loc::None));
        }
        if let Some(v) = view.header_field(name) {
            return Some((v.into(), Loc::None));
        }
    }
    None
}

/// For a field the event does not have: calls `each` with every element of the lists flattened
/// under its names (when the field has elements) until it returns `false`.
fn elements<'e>(spec: &FieldSpec, view: &EventView<'e>, mut each: impl FnMut(Val<'e>) -> bool) {
    elements_in(
        spec,
        (0..view.extra_len()).filter_map(|k| view.extra_bytes(k).map(|(n, v)| (Loc::None, n, v))),
        |_, v| each(v),
    );
}

/// [`elements`] among `extras` (the event's extra fields, in order, as `(where, name, value)`),
/// `each` given where each element is.
fn elements_in<'e>(
    spec: &FieldSpec,
    extras: impl Iterator<Item = (Loc, &'e [u8], &'e [u8])>,
    mut each: impl FnMut(Loc, Val<'e>) -> bool,
) {
    if !spec.elements {
        return;
    }
    for (loc, name, value) in extras {
        if spec.names.iter().any(|n| is_element(name, n)) && !each(loc, Val::Text(value)) {
            return;
        }
    }
}

/// Calls `each` with the bytes of every value of the field `spec` (`slots`: its [`slot_row`]) on
/// `view`, exactly as a program's automaton over that field is handed them: its value, or (when
/// the event does not have it) its elements; a number in decimal, a flag as `true`/`false`. Each
/// comes with where it is: `Loc::Body` or `Loc::Extra` when it is exactly the bytes
/// [`each_keyword_text`] reads at that place, `Loc::None` when it is a default or a header field.
pub(crate) fn each_text<'e>(
    spec: &FieldSpec,
    slots: &[u8; KINDS],
    view: &EventView<'e>,
    extras: &Extras<'e>,
    mut each: impl FnMut(Loc, &[u8]),
) {
    match resolve_at(spec, slots, view, |name| extras.named(name)) {
        Some((v, loc)) => with_bytes(v, |t| each(loc, t)),
        None => elements_in(spec, extras.0.iter().copied(), |loc, v| {
            with_bytes(v, |t| each(loc, t));
            true
        }),
    }
}

/// An event's extra fields as `(where, name, value)`, read from its table once, in order (an
/// entry whose ends are out of bounds is left out, as `EventView::extra_bytes` and `extra_named`
/// leave it; one past `u16::MAX` is where `Loc::None`, as [`each_keyword_text`] does not read it):
/// for a reader that looks up many names on one event, each then a walk of a short list rather
/// than of the event's table.
pub(crate) struct Extras<'e>(Vec<(Loc, &'e [u8], &'e [u8])>);

impl<'e> Extras<'e> {
    /// Reads the extra fields of `view`.
    pub(crate) fn read(view: &EventView<'e>) -> Extras<'e> {
        Extras(
            (0..view.extra_len())
                .filter_map(|k| {
                    let loc = u16::try_from(k).map_or(Loc::None, Loc::Extra);
                    view.extra_bytes(k).map(|(n, v)| (loc, n, v))
                })
                .collect(),
        )
    }

    /// Where the first extra field named `name` is and its value: what `EventView::extra_named`
    /// finds.
    #[inline]
    fn named(&self, name: &[u8]) -> Option<(Loc, &'e [u8])> {
        self.0
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|&(loc, _, v)| (loc, v))
    }
}

/// How `a` compares to `b` (Sigma `fieldref`): case-insensitively unless `cased`. ASCII values
/// are compared bytewise (eight bytes at a time where they are the same), only others folded;
/// `contains` is a two-way search, linear in both lengths.
fn compare(
    a: &[u8],
    b: &[u8],
    how: RefOp,
    cased: bool,
    fold: &mut String,
    fold2: &mut String,
) -> bool {
    fn text(t: &[u8]) -> &str {
        core::str::from_utf8(t).unwrap_or("")
    }
    if cased {
        return match how {
            RefOp::Equal => a == b,
            RefOp::Prefix => a.starts_with(b),
            RefOp::Suffix => a.ends_with(b),
            RefOp::Contains => text(a).contains(text(b)),
        };
    }
    if a.is_ascii() && b.is_ascii() {
        let (n, m) = (a.len(), b.len());
        return match how {
            RefOp::Equal => n == m && ascii_eq_fold(a, b),
            RefOp::Prefix => n >= m && ascii_eq_fold(&a[..m], b),
            RefOp::Suffix => n >= m && ascii_eq_fold(&a[n - m..], b),
            RefOp::Contains => {
                let a = fold_case(text(a), fold);
                let b = fold_case(text(b), fold2);
                a.contains(b)
            }
        };
    }
    let (a, b) = (fold_case(text(a), fold), fold_case(text(b), fold2));
    match how {
        RefOp::Equal => a == b,
        RefOp::Prefix => a.starts_with(b),
        RefOp::Suffix => a.ends_with(b),
        RefOp::Contains => a.contains(b),
    }
}

/// Whether two ASCII texts of one length are equal ignoring ASCII case: eight bytes at a time
/// where they are identical, byte by byte where they are not.
fn ascii_eq_fold(a: &[u8], b: &[u8]) -> bool {
    let (ca, ta) = a.as_chunks::<8>();
    let (cb, tb) = b.as_chunks::<8>();
    ca.len() == cb.len()
        && ca
            .iter()
            .zip(cb)
            .all(|(x, y)| x == y || x.eq_ignore_ascii_case(y))
        && ta.eq_ignore_ascii_case(tb)
}

/// Whether `name` is an element of the list `list` flattened by the reader: `list[<digits>]`.
fn is_element(name: &[u8], list: &str) -> bool {
    name.strip_prefix(list.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"["))
        .and_then(|rest| rest.strip_suffix(b"]"))
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

fn non_empty(v: Val<'_>) -> bool {
    match v {
        Val::Text(s) => !s.is_empty(),
        _ => true,
    }
}

/// Calls `f` with `value` as bytes of text: the text itself, a number in decimal, a flag as
/// `true`/`false`.
fn with_bytes<R>(value: Val<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
    match value {
        Val::Text(s) => f(s),
        Val::Int(n) => {
            let mut buf = [0u8; 20];
            f(decimal(n, &mut buf).as_bytes())
        }
        Val::Bool(b) => f(if b { b"true" } else { b"false" }),
    }
}

/// The part of `text` a detection can carry: a value over the SDK's cap is cut there anyway, so
/// only that much is read as UTF-8 (one byte more, so that the SDK sees it is too long and marks
/// it), ending at a character boundary.
fn capped(text: &[u8]) -> &str {
    let head = text
        .get(..rulebox_sdk::abi::MAX_FIELD_VALUE_BYTES + 1)
        .unwrap_or(text);
    match core::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        // A digit: `n % 10` is below 10.
        buf[i] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("")
}

/// Numbers and addresses are short; longer text is neither (and is not trimmed or parsed).
const MAX_NUMBER_TEXT: usize = 64;

fn number(value: &Val<'_>) -> Option<i64> {
    match value {
        Val::Int(n) => i64::try_from(*n).ok(),
        Val::Bool(_) => None,
        Val::Text(text) if text.len() > MAX_NUMBER_TEXT => None,
        Val::Text(text) => {
            let t = core::str::from_utf8(text).ok()?.trim();
            if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                i64::from_str_radix(hex, 16).ok()
            } else {
                t.parse().ok()
            }
        }
    }
}

fn in_network(text: &[u8], network: &[u8; 16], prefix: u8, v4: bool) -> bool {
    if text.len() > MAX_NUMBER_TEXT {
        return false;
    }
    let Ok(text) = core::str::from_utf8(text) else {
        return false;
    };
    let Ok(addr) = text.trim().parse::<IpAddr>() else {
        return false;
    };
    let (bytes, len): ([u8; 16], usize) = match (addr, v4) {
        (IpAddr::V4(a), true) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        (IpAddr::V6(a), false) => (a.octets(), 16),
        (IpAddr::V6(a), true) => match a.to_ipv4_mapped() {
            Some(a4) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a4.octets());
                (b, 4)
            }
            None => return false,
        },
        (IpAddr::V4(_), false) => return false,
    };
    let mut bits = usize::from(prefix).min(len * 8);
    for i in 0..len {
        if bits == 0 {
            break;
        }
        let take = bits.min(8);
        let mask: u8 = 0xffu8 << (8 - take);
        if bytes[i] & mask != network[i] & mask {
            return false;
        }
        bits -= take;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_read_once_find_what_the_view_finds() {
        use rulebox_sdk::{EventData, Field, ProcessStart};
        let mut event = Event::new(EventData::ProcessStart(ProcessStart::default()));
        for (name, value) in [
            ("A", "1"),
            ("Dup", "first"),
            ("Dup", "second"),
            ("", "empty"),
        ] {
            event.extra.push(Field {
                name: name.into(),
                value: value.into(),
            });
        }
        let bytes = event.to_bytes().unwrap();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut checked = 0;
        for round in 0..2_000 {
            let mut damaged = bytes.clone();
            if round > 0 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = usize::try_from(state % 65_521).unwrap_or(0) % damaged.len();
                damaged[at] = state.to_le_bytes()[4];
            }
            let Ok(view) = EventView::new(&damaged) else {
                continue;
            };
            let extras = Extras::read(&view);
            for name in [&b"A"[..], b"Dup", b"", b"Nope", b"Du"] {
                let found = extras.named(name);
                assert_eq!(
                    found.map(|(_, v)| v),
                    view.extra_named(name),
                    "round {round}"
                );
                // Where it is: the entry each_keyword_text reads at that place.
                if let Some((Loc::Extra(k), v)) = found {
                    assert_eq!(view.extra_bytes(usize::from(k)).map(|(_, v)| v), Some(v));
                }
            }
            checked += 1;
        }
        assert!(checked > 100, "only {checked} copies were read");
        let view = EventView::new(&bytes).unwrap();
        assert_eq!(
            Extras::read(&view).named(b"Dup").map(|(_, v)| v),
            Some(&b"first"[..])
        );
    }

    #[test]
    fn decimals_and_elements() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), "0");
        assert_eq!(decimal(4688, &mut buf), "4688");
        assert_eq!(decimal(u64::MAX, &mut buf), "18446744073709551615");
        assert!(is_element(b"Data[0]", "Data"));
        assert!(is_element(b"Data[12]", "Data"));
        assert!(!is_element(b"Data", "Data"));
        assert!(!is_element(b"Data[]", "Data"));
        assert!(!is_element(b"Data[x]", "Data"));
        assert!(!is_element(b"DataX[0]", "Data"));
    }

    #[test]
    fn field_references_compare_by_bytes_and_fold() {
        let (mut f1, mut f2) = (String::new(), String::new());
        let mut cmp = |a: &str, b: &str, how, cased| {
            compare(a.as_bytes(), b.as_bytes(), how, cased, &mut f1, &mut f2)
        };
        let long = "C:\\Windows\\".repeat(300);
        assert!(cmp(&long, &long.to_uppercase(), RefOp::Equal, false));
        assert!(!cmp(&long, &long.to_uppercase(), RefOp::Equal, true));
        assert!(!cmp(&long, &(long.clone() + "x"), RefOp::Equal, false));
        assert!(cmp("C:\\A\\B.EXE", "c:\\a", RefOp::Prefix, false));
        assert!(cmp("C:\\A\\B.EXE", "b.exe", RefOp::Suffix, false));
        assert!(cmp("xxÄRGERyy", "ärger", RefOp::Contains, false));
        assert!(cmp("ÄRGER", "ärger", RefOp::Equal, false));
        assert!(!cmp("ÄRGER", "ärger", RefOp::Equal, true));
        assert!(!cmp("a", "ab", RefOp::Prefix, false));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(&Val::Text(b" 0x10 ")), Some(16));
        assert_eq!(number(&Val::Text(b"-5")), Some(-5));
        let long = alloc::string::String::from(" ").repeat(100) + "5";
        assert_eq!(number(&Val::Text(long.as_bytes())), None);
        assert_eq!(number(&Val::Int(7)), Some(7));
        assert!(in_network(
            b"10.1.2.3",
            &[10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            8,
            true
        ));
        assert!(!in_network(
            b"11.1.2.3",
            &[10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            8,
            true
        ));
    }
}
