//! Sigma `re` values parsed into expressions over characters, for the automata of [`crate::lower`].
//!
//! Parsing is `regex-syntax` with PCRE-like defaults: `\d`, `\w`, `\s`, `\b` and case folding are
//! ASCII (as PCRE without Unicode properties), `.` and a negated class also match every non-ASCII
//! character, and a non-ASCII character in a class (`[-/–]`) is that character. Look-around and
//! back-references do not parse; they are refused, as are assertions a DFA cannot run.

use regex_syntax::ast::{self, Ast, ClassSet, ClassSetItem, ClassSetUnion};
use regex_syntax::hir::translate::TranslatorBuilder;
use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, Hir, HirKind, Look, Repetition};

use crate::SigmaError;

/// Nesting deeper than this does not parse.
const NEST_LIMIT: u32 = 64;

/// Parses the Sigma `re` value `pattern` of `field` with the flags `(i, m, s)`.
pub fn compile_regex(
    field: &str,
    pattern: &str,
    (ignore_case, multi_line, dot_all): (bool, bool, bool),
) -> Result<Hir, SigmaError> {
    let err = |problem: String| SigmaError::Regex {
        field: field.to_owned(),
        pattern: pattern.to_owned(),
        problem,
    };
    // The first line of regex-syntax's message names the construct ("look-around ... is not
    // supported").
    let first_error = |text: String| {
        text.lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("does not parse")
            .trim_start_matches("error: ")
            .to_owned()
    };
    let mut tree = ast::parse::ParserBuilder::new()
        .nest_limit(NEST_LIMIT)
        .build()
        .parse(pattern)
        .map_err(|e| err(first_error(e.to_string())))?;
    lift_non_ascii(&mut tree).map_err(|()| {
        err(
            "a negated class or a range with non-ASCII characters (list them outside the class)"
                .into(),
        )
    })?;
    let hir = TranslatorBuilder::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(ignore_case)
        .multi_line(multi_line)
        .dot_matches_new_line(dot_all)
        .build()
        .translate(pattern, &tree)
        .map_err(|e| err(first_error(e.to_string())))?;
    over_chars(&hir).map_err(err)
}

/// Moves the non-ASCII characters of a (non-negated) bracketed class out of it: `[-/–]` becomes
/// `(?:[-/]|–)`, which the byte-oriented parser accepts with the same meaning. Refuses a negated
/// class or a range with such characters.
fn lift_non_ascii(tree: &mut Ast) -> Result<(), ()> {
    match tree {
        Ast::Repetition(r) => lift_non_ascii(&mut r.ast),
        Ast::Group(g) => lift_non_ascii(&mut g.ast),
        Ast::Alternation(a) => a.asts.iter_mut().try_for_each(lift_non_ascii),
        Ast::Concat(c) => c.asts.iter_mut().try_for_each(lift_non_ascii),
        Ast::ClassBracketed(class) => {
            let items: Vec<ClassSetItem> = match &class.kind {
                ClassSet::Item(ClassSetItem::Union(u)) => u.items.clone(),
                ClassSet::Item(item) => vec![item.clone()],
                ClassSet::BinaryOp(_) => return Ok(()),
            };
            let wide = |item: &ClassSetItem| match item {
                ClassSetItem::Literal(l) => !l.c.is_ascii(),
                ClassSetItem::Range(r) => !r.start.c.is_ascii() || !r.end.c.is_ascii(),
                _ => false,
            };
            if !items.iter().any(wide) {
                return Ok(());
            }
            if class.negated {
                return Err(());
            }
            let span = class.span;
            let mut rest = Vec::new();
            let mut lifted = Vec::new();
            for item in items {
                match item {
                    ClassSetItem::Literal(l) if !l.c.is_ascii() => lifted.push(Ast::literal(l)),
                    ClassSetItem::Range(_) if wide(&item) => return Err(()),
                    other => rest.push(other),
                }
            }
            let mut alts = Vec::new();
            if !rest.is_empty() {
                alts.push(Ast::class_bracketed(ast::ClassBracketed {
                    span,
                    negated: false,
                    kind: ClassSet::union(ClassSetUnion { span, items: rest }),
                }));
            }
            alts.extend(lifted);
            *tree = Ast::group(ast::Group {
                span,
                kind: ast::GroupKind::NonCapturing(ast::Flags {
                    span,
                    items: Vec::new(),
                }),
                ast: Box::new(Ast::alternation(ast::Alternation { span, asts: alts })),
            });
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The byte-oriented expression over characters: ASCII byte classes as they are, the non-ASCII
/// bytes of a class (all of them, as in `.` or a negated class) as every non-ASCII character.
fn over_chars(hir: &Hir) -> Result<Hir, String> {
    Ok(match hir.kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(lit) => {
            std::str::from_utf8(&lit.0).map_err(|_| "a literal that is not UTF-8".to_owned())?;
            Hir::literal(lit.0.clone())
        }
        HirKind::Class(Class::Unicode(cls)) => Hir::class(Class::Unicode(cls.clone())),
        HirKind::Class(Class::Bytes(cls)) => {
            let mut ranges = Vec::new();
            let mut high = 0u32;
            for r in cls.ranges() {
                let (lo, hi) = (r.start(), r.end());
                if lo <= 0x7f {
                    ranges.push(ClassUnicodeRange::new(
                        char::from(lo),
                        char::from(hi.min(0x7f)),
                    ));
                }
                if hi >= 0x80 {
                    high += u32::from(hi) - u32::from(lo.max(0x80)) + 1;
                }
            }
            match high {
                0 => {}
                128 => ranges.push(ClassUnicodeRange::new('\u{80}', '\u{10FFFF}')),
                _ => return Err("a class of some non-ASCII bytes".into()),
            }
            if ranges.is_empty() {
                return Err("a class that matches nothing".into());
            }
            Hir::class(Class::Unicode(ClassUnicode::new(ranges)))
        }
        HirKind::Look(look) => match look {
            Look::Start
            | Look::End
            | Look::StartLF
            | Look::EndLF
            | Look::WordAscii
            | Look::WordAsciiNegate => Hir::look(*look),
            other => return Err(format!("the assertion {other:?}")),
        },
        HirKind::Capture(cap) => over_chars(&cap.sub)?,
        HirKind::Concat(items) => {
            Hir::concat(items.iter().map(over_chars).collect::<Result<_, _>>()?)
        }
        HirKind::Alternation(alts) => {
            Hir::alternation(alts.iter().map(over_chars).collect::<Result<_, _>>()?)
        }
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            min: rep.min,
            max: rep.max,
            greedy: rep.greedy,
            sub: Box::new(over_chars(&rep.sub)?),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::automaton::{Mode, build};
    use rulebox_sigma_eval::Automaton;

    fn matcher(p: &str, flags: (bool, bool, bool)) -> impl Fn(&str) -> bool {
        let dfa = build(
            &[compile_regex("F", p, flags).unwrap()],
            Mode::Unanchored,
            &[],
            &[],
        )
        .unwrap();
        let a = Automaton::new(dfa).unwrap();
        move |text: &str| {
            let mut st = a.state();
            a.scan(text.as_bytes(), &mut st);
            st.found(0)
        }
    }

    fn re(p: &str) -> impl Fn(&str) -> bool {
        matcher(p, (false, false, false))
    }

    #[test]
    fn corpus_style_expressions() {
        let r = re(r"^C:\\Users\\[^\\]+\\NTUSER\.DAT$");
        assert!(r(r"C:\Users\bob\NTUSER.DAT"));
        assert!(
            r(r"C:\Users\bøb\NTUSER.DAT"),
            "negated class takes non-ASCII"
        );
        assert!(!r(r"C:\Users\bob\x\NTUSER.DAT"));
        assert!(!r(r"C:\Users\bob\ntuser.dat"), "case-sensitive by default");
        let r = matcher(r"^C:\\Users\\[^\\]+\\NTUSER\.DAT$", (true, false, false));
        assert!(r(r"c:\users\bob\ntuser.dat"), "|i folds case");
        let r = re(r"://[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}");
        assert!(r("curl http://10.0.0.1/x"));
        assert!(!r("curl http://example.com/x"));
        let r = re(r"(?i)\s(-u|--user)\s*:");
        assert!(r("curl --USER : x"));
        assert!(!r("curl --userx:"));
        let r = re(r"\s-H\s");
        assert!(r("curl -H x"));
        assert!(!r("curl -h x"));
        let r = re(r"\bcmd\b");
        assert!(r("run cmd now"));
        assert!(!r("runcmdnow"));
        let r = re(r"a.c");
        assert!(r("aéc"), "`.` is any character");
        assert!(!r("a\nc"));
        let r = matcher("a.c", (false, false, true));
        assert!(r("a\nc"), "|s: `.` takes a newline");
        let r = matcher("^b", (false, true, false));
        assert!(r("a\nb"), "|m: `^` after a newline");
        assert!(!re("^b")("a\nb"));
    }

    #[test]
    fn non_ascii_in_a_class_is_that_character() {
        let r = re(r"[-/–][Ee^]{1,2}[ncodema^]*\s[A-Za-z0-9+/=]{15,}");
        assert!(r("powershell –enc SQBFAFgAIAAoAE4AZQB3"));
        assert!(r("powershell -e SQBFAFgAIAAoAE4AZQB3"));
        assert!(!r("powershell ~e SQBFAFgAIAAoAE4AZQB3"));
        let e = compile_regex("F", "[^–]", (false, false, false)).unwrap_err();
        assert!(e.to_string().contains("negated class"), "{e}");
    }

    #[test]
    fn counted_repetitions_stay_linear() {
        let r = re(".{1000,}");
        assert!(r(&"x".repeat(2048)));
        assert!(!r(&"x".repeat(999)));
        let r = re(r"\d{4}");
        assert!(r("build 2024"));
        assert!(!r("build 202"));
    }

    #[test]
    fn refusals_name_the_construct() {
        for (p, needle) in [
            (r"(?=x)", "look-around"),
            (r"(a)\1", "backreference"),
            (r"(", "unclosed"),
        ] {
            let e = compile_regex("F", p, (false, false, false))
                .unwrap_err()
                .to_string();
            assert!(e.to_lowercase().contains(needle), "{p}: {e}");
        }
    }
}
