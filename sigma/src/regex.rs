//! Sigma `re` values lowered to the evaluator's Pike VM ([`rulebox_sigma_eval::Regex`]).
//!
//! Parsing is `regex-syntax` with PCRE-like defaults: `\d`, `\w`, `\s`, `\b` and case folding are
//! ASCII (as PCRE without Unicode properties), and a negated class also matches every non-ASCII
//! character. Look-around and back-references do not parse; they are refused, as are anchors and
//! classes the VM cannot honour exactly.

use regex_syntax::ParserBuilder;
use regex_syntax::hir::{Class, Hir, HirKind, Look as HirLook};
use rulebox_sigma_eval::{Inst, Look, Regex};

use crate::SigmaError;

/// The most instructions one regular expression may compile to (counted repetitions are expanded).
pub const MAX_INSTS: usize = 10_000;

struct Compiler<'a> {
    insts: Vec<Inst>,
    field: &'a str,
    pattern: &'a str,
}

impl Compiler<'_> {
    fn err(&self, problem: impl Into<String>) -> SigmaError {
        SigmaError::Regex {
            field: self.field.to_owned(),
            pattern: self.pattern.to_owned(),
            problem: problem.into(),
        }
    }

    fn pc(&self) -> u32 {
        u32::try_from(self.insts.len()).unwrap_or(u32::MAX)
    }

    fn push(&mut self, inst: Inst) -> Result<u32, SigmaError> {
        if self.insts.len() >= MAX_INSTS {
            return Err(SigmaError::TooLarge {
                what: "a regular expression's program",
                size: self.insts.len() + 1,
                limit: MAX_INSTS,
            });
        }
        let pc = self.pc();
        self.insts.push(inst);
        Ok(pc)
    }

    fn patch(&mut self, at: u32, inst: Inst) {
        self.insts[at as usize] = inst;
    }

    fn hir(&mut self, hir: &Hir) -> Result<(), SigmaError> {
        match hir.kind() {
            HirKind::Empty => Ok(()),
            HirKind::Literal(lit) => {
                let text = std::str::from_utf8(&lit.0)
                    .map_err(|_| self.err("a literal that is not UTF-8"))?;
                for c in text.chars() {
                    self.push(Inst::Ranges(vec![(c as u32, c as u32)]))?;
                }
                Ok(())
            }
            HirKind::Class(Class::Unicode(cls)) => {
                let ranges = cls
                    .ranges()
                    .iter()
                    .map(|r| (r.start() as u32, r.end() as u32))
                    .collect();
                self.push(Inst::Ranges(ranges)).map(drop)
            }
            HirKind::Class(Class::Bytes(cls)) => {
                let mut ranges: Vec<(u32, u32)> = Vec::new();
                let mut high = 0u32;
                for r in cls.ranges() {
                    let (lo, hi) = (u32::from(r.start()), u32::from(r.end()));
                    if lo <= 0x7f {
                        ranges.push((lo, hi.min(0x7f)));
                    }
                    if hi >= 0x80 {
                        high += hi - lo.max(0x80) + 1;
                    }
                }
                match high {
                    0 => {}
                    // Every non-ASCII byte: in a negated class or `.`, every non-ASCII character.
                    128 => ranges.push((0x80, 0x10_FFFF)),
                    _ => return Err(self.err("a class of some non-ASCII bytes")),
                }
                if ranges.is_empty() {
                    return Err(self.err("a class that matches nothing"));
                }
                self.push(Inst::Ranges(ranges)).map(drop)
            }
            HirKind::Look(look) => {
                let l = match look {
                    HirLook::Start => Look::Start,
                    HirLook::End => Look::End,
                    HirLook::StartLF => Look::StartLine,
                    HirLook::EndLF => Look::EndLine,
                    HirLook::WordAscii => Look::Word,
                    HirLook::WordAsciiNegate => Look::NotWord,
                    other => return Err(self.err(format!("the assertion {other:?}"))),
                };
                self.push(Inst::Assert(l)).map(drop)
            }
            HirKind::Capture(cap) => self.hir(&cap.sub),
            HirKind::Concat(items) => items.iter().try_for_each(|h| self.hir(h)),
            HirKind::Alternation(alts) => {
                let mut jumps = Vec::new();
                for (i, alt) in alts.iter().enumerate() {
                    if i + 1 < alts.len() {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.hir(alt)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        let next = self.pc();
                        self.patch(split, Inst::Split(split + 1, next));
                    } else {
                        self.hir(alt)?;
                    }
                }
                let end = self.pc();
                for j in jumps {
                    self.patch(j, Inst::Jmp(end));
                }
                Ok(())
            }
            HirKind::Repetition(rep) => {
                // Greediness does not matter: only whether there is a match.
                for _ in 0..rep.min {
                    self.hir(&rep.sub)?;
                }
                match rep.max {
                    None => {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.hir(&rep.sub)?;
                        self.push(Inst::Jmp(split))?;
                        let end = self.pc();
                        self.patch(split, Inst::Split(split + 1, end));
                    }
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in rep.min..max {
                            splits.push(self.push(Inst::Split(0, 0))?);
                            self.hir(&rep.sub)?;
                        }
                        let end = self.pc();
                        for s in splits {
                            self.patch(s, Inst::Split(s + 1, end));
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Compiles the Sigma `re` value `pattern` of `field` with the flags `(i, m, s)`.
pub fn compile_regex(
    field: &str,
    pattern: &str,
    (ignore_case, multi_line, dot_all): (bool, bool, bool),
) -> Result<Regex, SigmaError> {
    let hir = ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(ignore_case)
        .multi_line(multi_line)
        .dot_matches_new_line(dot_all)
        .nest_limit(64)
        .build()
        .parse(pattern)
        .map_err(|e| SigmaError::Regex {
            field: field.to_owned(),
            pattern: pattern.to_owned(),
            // The first line names the construct (e.g. "look-around ... is not supported").
            problem: e
                .to_string()
                .lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .unwrap_or("does not parse")
                .trim_start_matches("error: ")
                .to_owned(),
        })?;
    let mut c = Compiler {
        insts: Vec::new(),
        field,
        pattern,
    };
    c.hir(&hir)?;
    c.push(Inst::Match)?;
    let re = Regex { insts: c.insts };
    re.check()
        .map_err(|e| c_err(field, pattern, &e.to_string()))?;
    Ok(re)
}

fn c_err(field: &str, pattern: &str, problem: &str) -> SigmaError {
    SigmaError::Regex {
        field: field.to_owned(),
        pattern: pattern.to_owned(),
        problem: problem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> Regex {
        compile_regex("F", p, (false, false, false)).unwrap()
    }

    #[test]
    fn corpus_style_expressions() {
        let r = re(r"^C:\\Users\\[^\\]+\\NTUSER\.DAT$");
        assert!(r.is_match(r"C:\Users\bob\NTUSER.DAT"));
        assert!(
            r.is_match(r"C:\Users\bøb\NTUSER.DAT"),
            "negated class takes non-ASCII"
        );
        assert!(!r.is_match(r"C:\Users\bob\x\NTUSER.DAT"));
        assert!(
            !r.is_match(r"C:\Users\bob\ntuser.dat"),
            "case-sensitive by default"
        );
        let r = compile_regex(
            "F",
            r"^C:\\Users\\[^\\]+\\NTUSER\.DAT$",
            (true, false, false),
        )
        .unwrap();
        assert!(r.is_match(r"c:\users\bob\ntuser.dat"), "|i folds case");
        let r = re(r"://[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}");
        assert!(r.is_match("curl http://10.0.0.1/x"));
        assert!(!r.is_match("curl http://example.com/x"));
        let r = re(r"(?i)\s(-u|--user)\s*:");
        assert!(r.is_match("curl --USER : x"));
        assert!(!r.is_match("curl --userx:"));
        let r = re(r"\s-H\s");
        assert!(r.is_match("curl -H x"));
        assert!(!r.is_match("curl -h x"));
        let r = re(r"\bcmd\b");
        assert!(r.is_match("run cmd now"));
        assert!(!r.is_match("runcmdnow"));
        let r = re(r"a.c");
        assert!(r.is_match("aéc"), "`.` is any character");
        assert!(!r.is_match("a\nc"));
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
        let e = compile_regex("F", "(?:a{1000}){1000}", (false, false, false)).unwrap_err();
        assert!(matches!(e, SigmaError::TooLarge { .. }), "{e}");
    }
}
