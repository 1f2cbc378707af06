//! Evaluating a [`Program`] on an event.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::net::IpAddr;

use rulebox_sdk::{Event, EventView, Value};

use crate::fold::fold_case;
use crate::program::{Check, Expr, NumOp, Pattern, Program, Test};

/// Evaluates one program on events; keeps scratch buffers between events.
#[derive(Debug, Clone)]
pub struct Evaluator {
    program: Program,
    scratch: Scratch,
}

#[derive(Debug, Clone, Default)]
struct Scratch {
    fold: String,
    fold2: String,
    text: String,
    text2: String,
    /// The case-folded value of the field `cached_name`, for this event: a rule often tests one
    /// field against many patterns (a list of `contains` values), and folds it only once.
    folded: String,
    cached_name: String,
    cache_valid: bool,
    /// Encoding buffer for [`Evaluator::matches_event`].
    encoded: Vec<u8>,
}

impl Evaluator {
    /// An evaluator for `program`.
    pub fn new(program: Program) -> Evaluator {
        Evaluator {
            program,
            scratch: Scratch::default(),
        }
    }

    /// The program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Whether the rule matches `event` (its kind included), read in place as the host encoded it.
    pub fn matches(&mut self, event: &EventView<'_>) -> bool {
        self.scratch.cache_valid = false;
        self.program.kinds.contains(event.kind())
            && eval(&self.program.condition, event, &mut self.scratch)
    }

    /// Whether the rule matches a typed `event`: encodes it as the host would, then [`matches`](Self::matches).
    /// For tests and tools; an event that does not encode matches nothing.
    pub fn matches_event(&mut self, event: &Event<'_>) -> bool {
        let mut bytes = core::mem::take(&mut self.scratch.encoded);
        bytes.clear();
        let hit = event.encode_into(&mut bytes).is_ok()
            && EventView::new(&bytes).is_ok_and(|view| self.matches(&view));
        self.scratch.encoded = bytes;
        hit
    }
}

fn eval(expr: &Expr, event: &EventView<'_>, s: &mut Scratch) -> bool {
    match expr {
        Expr::True => true,
        Expr::False => false,
        Expr::And(v) => v.iter().all(|e| eval(e, event, s)),
        Expr::Or(v) => v.iter().any(|e| eval(e, event, s)),
        Expr::Not(e) => !eval(e, event, s),
        Expr::Kind(kinds) => kinds.contains(event.kind()),
        Expr::Test(test) => eval_test(test, event, s),
    }
}

/// `value` as text: the string itself, or a number or flag written into `buf`.
fn as_text<'a>(value: &Value<'a>, buf: &'a mut String) -> &'a str {
    match value {
        Value::Str(s) => s,
        Value::Int(n) => {
            buf.clear();
            let _ = write!(buf, "{n}");
            buf
        }
        Value::Bool(b) => {
            if *b {
                "true"
            } else {
                "false"
            }
        }
    }
}

fn eval_test(test: &Test, event: &EventView<'_>, s: &mut Scratch) -> bool {
    let Some(name) = &test.field else {
        return keyword(&test.check, event, s);
    };
    let value = event.field(name);
    match &test.check {
        Check::Null => match value {
            None => true,
            Some(Value::Str(v)) => v.is_empty(),
            Some(_) => false,
        },
        Check::Exists(want) => {
            let present = match value {
                None => false,
                Some(Value::Str(v)) => !v.is_empty(),
                Some(_) => true,
            };
            present == *want
        }
        Check::FieldRef { other, how, cased } => {
            let (Some(a), Some(b)) = (value, event.field(other)) else {
                return false;
            };
            let a = as_text(&a, &mut s.text);
            let b = as_text(&b, &mut s.text2);
            let (a, b) = if *cased {
                (a, b)
            } else {
                (fold_case(a, &mut s.fold), fold_case(b, &mut s.fold2))
            };
            match how {
                Pattern::Exact(_) | Pattern::Glob(_) => a == b,
                Pattern::Contains(_) => a.contains(b),
                Pattern::Prefix(_) => a.starts_with(b),
                Pattern::Suffix(_) => a.ends_with(b),
            }
        }
        Check::Text {
            pattern,
            cased: false,
        } => {
            let Some(v) = value else { return false };
            if !(s.cache_valid && s.cached_name == *name) {
                let text = as_text(&v, &mut s.text);
                let folded = fold_case(text, &mut s.fold);
                s.folded.clear();
                s.folded.push_str(folded);
                s.cached_name.clear();
                s.cached_name.push_str(name);
                s.cache_valid = true;
            }
            pattern.matches(&s.folded)
        }
        check => match value {
            None => false,
            Some(v) => value_check(check, &v, s),
        },
    }
}

fn value_check(check: &Check, value: &Value<'_>, s: &mut Scratch) -> bool {
    match check {
        Check::Text { pattern, cased } => {
            let text = as_text(value, &mut s.text);
            if *cased {
                pattern.matches(text)
            } else {
                pattern.matches(fold_case(text, &mut s.fold))
            }
        }
        Check::Regex(re) => re.is_match(as_text(value, &mut s.text)),
        Check::Cidr {
            network,
            prefix,
            v4,
        } => {
            let Value::Str(text) = value else {
                return false;
            };
            in_network(text.trim(), network, *prefix, *v4)
        }
        Check::Num { op, value: rhs } => {
            let Some(lhs) = number(value) else {
                return false;
            };
            match op {
                NumOp::Lt => lhs < *rhs,
                NumOp::Lte => lhs <= *rhs,
                NumOp::Gt => lhs > *rhs,
                NumOp::Gte => lhs >= *rhs,
            }
        }
        // Handled by `eval_test`, which knows whether the field is there.
        Check::Null | Check::Exists(_) | Check::FieldRef { .. } => false,
    }
}

/// A Sigma keyword: the check holds for the value of some field of the event.
fn keyword(check: &Check, event: &EventView<'_>, s: &mut Scratch) -> bool {
    let mut found = false;
    event.for_each_body_field(&mut |_, value| {
        if !found {
            found = value_check(check, &value, s);
        }
    });
    found
        || event
            .extras()
            .any(|(_, value)| value_check(check, &Value::Str(value), s))
}

fn number(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Int(n) => i64::try_from(*n).ok(),
        Value::Bool(_) => None,
        Value::Str(text) => {
            let t = text.trim();
            if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                i64::from_str_radix(hex, 16).ok()
            } else {
                t.parse().ok()
            }
        }
    }
}

fn in_network(text: &str, network: &[u8; 16], prefix: u8, v4: bool) -> bool {
    let Ok(addr) = text.parse::<IpAddr>() else {
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
    use crate::program::{FORMAT_VERSION, Glob};
    use alloc::vec;
    use rulebox_sdk::{
        EventData, EventKind, EventKinds, Field, NetworkConnect, ProcessStart, Severity,
    };

    fn program(condition: Expr) -> Evaluator {
        Evaluator::new(Program {
            format: FORMAT_VERSION,
            id: "t".into(),
            title: "t".into(),
            version: "1".into(),
            severity: Severity::Low,
            kinds: EventKinds::all(),
            condition,
        })
    }

    fn test(field: &str, check: Check) -> Expr {
        Expr::Test(Test {
            field: Some(field.into()),
            check,
        })
    }

    fn text(pattern: Pattern) -> Check {
        Check::Text {
            pattern,
            cased: false,
        }
    }

    fn proc_event(image: &str, cmd: &str) -> Event<'static> {
        let mut body = ProcessStart::default();
        body.image = String::from(image).into();
        body.command_line = String::from(cmd).into();
        body.parent_pid = 12;
        Event::new(EventData::ProcessStart(body))
    }

    #[test]
    fn text_checks_fold_case() {
        let e = proc_event("C:\\Windows\\CMD.exe", "cmd /C Whoami");
        let mut ev = program(test("Image", text(Pattern::Suffix("\\cmd.exe".into()))));
        assert!(ev.matches_event(&e));
        let mut ev = program(test(
            "CommandLine",
            Check::Text {
                pattern: Pattern::Contains("whoami".into()),
                cased: true,
            },
        ));
        assert!(!ev.matches_event(&e), "cased check must not fold");
        let mut ev = program(test(
            "CommandLine",
            text(Pattern::Glob(vec![
                Glob::Lit("cmd".into()),
                Glob::Any,
                Glob::Lit("whoami".into()),
            ])),
        ));
        assert!(ev.matches_event(&e));
        let mut ev = program(test("ParentProcessId", text(Pattern::Exact("12".into()))));
        assert!(ev.matches_event(&e), "numbers compare as text");
    }

    #[test]
    fn folded_value_cache_is_per_field_and_per_event() {
        // Image, then CommandLine, then Image again, on two events with the same evaluator.
        let cond = Expr::And(vec![
            test("Image", text(Pattern::Suffix("\\a.exe".into()))),
            test("CommandLine", text(Pattern::Contains("go".into()))),
            test("Image", text(Pattern::Prefix("c:".into()))),
        ]);
        let mut ev = program(cond);
        assert!(ev.matches_event(&proc_event("C:\\A.EXE", "GO")));
        assert!(
            !ev.matches_event(&proc_event("C:\\B.EXE", "GO")),
            "stale Image"
        );
        assert!(
            !ev.matches_event(&proc_event("C:\\A.EXE", "stop")),
            "stale CommandLine"
        );
        assert!(ev.matches_event(&proc_event("c:\\a.exe", "go")));
    }

    #[test]
    fn null_exists_and_missing_fields() {
        let e = proc_event("a.exe", "");
        assert!(program(test("CommandLine", Check::Null)).matches_event(&e));
        assert!(program(test("NoSuchField", Check::Null)).matches_event(&e));
        assert!(!program(test("Image", Check::Null)).matches_event(&e));
        assert!(program(test("Image", Check::Exists(true))).matches_event(&e));
        assert!(program(test("CommandLine", Check::Exists(false))).matches_event(&e));
        assert!(
            !program(test("NoSuchField", text(Pattern::Contains("".into())))).matches_event(&e)
        );
        assert!(
            program(Expr::Not(Box::new(test(
                "NoSuchField",
                text(Pattern::Exact("x".into()))
            ))))
            .matches_event(&e)
        );
    }

    #[test]
    fn numbers_cidr_fieldref_keywords() {
        let mut body = NetworkConnect::default();
        body.destination_ip = "10.1.2.3".into();
        body.destination_port = 4444;
        let mut e = Event::new(EventData::NetworkConnect(body));
        e.extra.push(Field {
            name: "Note".into(),
            value: "Mimikatz here".into(),
        });
        let gt = |v| {
            test(
                "DestinationPort",
                Check::Num {
                    op: NumOp::Gt,
                    value: v,
                },
            )
        };
        assert!(program(gt(1024)).matches_event(&e));
        assert!(!program(gt(5000)).matches_event(&e));
        let cidr = |n: [u8; 4], p| {
            let mut network = [0u8; 16];
            network[..4].copy_from_slice(&n);
            test(
                "DestinationIp",
                Check::Cidr {
                    network,
                    prefix: p,
                    v4: true,
                },
            )
        };
        assert!(program(cidr([10, 0, 0, 0], 8)).matches_event(&e));
        assert!(!program(cidr([10, 2, 0, 0], 16)).matches_event(&e));
        let kw = Expr::Test(Test {
            field: None,
            check: text(Pattern::Contains("mimikatz".into())),
        });
        assert!(program(kw).matches_event(&e));
        let mut same = proc_event("x", "X");
        if let EventData::ProcessStart(p) = &mut same.data {
            p.parent_image = "x".into();
        }
        let fr = test(
            "Image",
            Check::FieldRef {
                other: "ParentImage".into(),
                how: Pattern::Exact(String::new()),
                cased: false,
            },
        );
        assert!(program(fr).matches_event(&same));
        let mut kinds_only = program(Expr::True);
        kinds_only.program.kinds = EventKinds::of(&[EventKind::DnsQuery]);
        assert!(!kinds_only.matches_event(&e));
    }
}
