//! One field entry of a selection (`Field|mod|mod: value-or-list`) lowered to an expression: every
//! modifier applied at compile time, every alternative spelled out, every pattern case-folded.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rulebox_sigma_eval::{NumOp, RefOp, fold_case};
use yaml_rust2::Yaml;

use crate::SigmaError;
use crate::ir::{Check, Glob, Node, Pattern, Position};
use crate::regex::compile_regex;

/// At most this many alternatives from one value (windash, base64offset).
pub const MAX_ALTERNATIVES: usize = 1024;

/// A Sigma string: literal characters and the wildcards `*` and `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ch(char),
    Any,
    One,
}

/// A value in the middle of the modifier pipeline: text with wildcards, or bytes (after `wide`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Text(Vec<Tok>),
    Bytes(Vec<u8>),
}

/// Parses Sigma's string escapes: `\*`, `\?` and `\\` are literal; any other backslash is literal.
fn sigma_string(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    out.push(Tok::Ch(n));
                    chars.next();
                }
                _ => out.push(Tok::Ch('\\')),
            },
            '*' => out.push(Tok::Any),
            '?' => out.push(Tok::One),
            c => out.push(Tok::Ch(c)),
        }
    }
    out
}

fn plain(toks: &[Tok]) -> Option<String> {
    toks.iter()
        .map(|t| match t {
            Tok::Ch(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The dashes `windash` puts in place of a leading `-` or `/`.
const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// Every spelling of `toks` with each option-leading `-` or `/` (one not after a word character and
/// followed by one) replaced by each Windows command-line dash.
fn windash(toks: &[Tok]) -> Result<Vec<Vec<Tok>>, SigmaError> {
    let spots: Vec<usize> = (0..toks.len())
        .filter(|&i| {
            let Tok::Ch(c) = toks[i] else { return false };
            let before = i == 0 || !matches!(toks[i - 1], Tok::Ch(p) if is_word(p));
            let after = matches!(toks.get(i + 1), Some(Tok::Ch(n)) if is_word(*n));
            (c == '-' || c == '/') && before && after
        })
        .collect();
    let count = DASHES
        .len()
        .checked_pow(u32::try_from(spots.len()).unwrap_or(u32::MAX))
        .unwrap_or(usize::MAX);
    if count > MAX_ALTERNATIVES {
        return Err(SigmaError::TooLarge {
            what: "the `windash` expansion",
            size: count,
            limit: MAX_ALTERNATIVES,
        });
    }
    let mut out = vec![toks.to_vec()];
    for &spot in &spots {
        out = out
            .into_iter()
            .flat_map(|v| {
                DASHES.iter().map(move |d| {
                    let mut v = v.clone();
                    v[spot] = Tok::Ch(*d);
                    v
                })
            })
            .collect();
    }
    Ok(out)
}

/// The three base64 spellings of `bytes` at each offset modulo 3, trimmed to the characters that do
/// not depend on what surrounds it (Sigma `base64offset`).
fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut padded = vec![b' '; i];
            padded.extend_from_slice(bytes);
            let enc = B64.encode(&padded);
            let trim = END[(bytes.len() + i) % 3];
            let end = enc.len().saturating_sub(trim);
            enc.get(START[i]..end).unwrap_or("").to_owned()
        })
        .collect()
}

/// A scalar's text: strings as written, numbers and flags as decimal / `true` / `false`.
fn scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Real(r) => Some(r.clone()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The parsed modifiers of one field key.
#[derive(Debug, Default)]
struct Mods {
    transforms: Vec<&'static str>,
    position: Option<&'static str>,
    all: bool,
    cased: bool,
    re: bool,
    re_flags: (bool, bool, bool),
    cidr: bool,
    exists: bool,
    fieldref: bool,
    num: Option<NumOp>,
}

fn parse_mods(key: &str, field: &str, mods: &[&str]) -> Result<Mods, SigmaError> {
    let bad = |m: &str, detail: &str| SigmaError::UnsupportedModifier {
        field: key.to_owned(),
        modifier: m.to_owned(),
        detail: detail.to_owned(),
    };
    let mut m = Mods::default();
    for &name in mods {
        match name {
            "contains" | "startswith" | "endswith" => {
                if m.position.is_some() {
                    return Err(bad(name, ": only one of contains, startswith, endswith"));
                }
                m.position = Some(match name {
                    "contains" => "contains",
                    "startswith" => "startswith",
                    _ => "endswith",
                });
            }
            "all" => m.all = true,
            "cased" => m.cased = true,
            "re" => m.re = true,
            "i" | "ignorecase" if m.re => m.re_flags.0 = true,
            "m" | "multiline" if m.re => m.re_flags.1 = true,
            "s" | "dotall" if m.re => m.re_flags.2 = true,
            "cidr" => m.cidr = true,
            "exists" => m.exists = true,
            "fieldref" => m.fieldref = true,
            "lt" => m.num = Some(NumOp::Lt),
            "lte" => m.num = Some(NumOp::Lte),
            "gt" => m.num = Some(NumOp::Gt),
            "gte" => m.num = Some(NumOp::Gte),
            "base64" => m.transforms.push("base64"),
            "base64offset" => m.transforms.push("base64offset"),
            "windash" => m.transforms.push("windash"),
            "wide" | "utf16le" => m.transforms.push("utf16le"),
            "utf16be" => m.transforms.push("utf16be"),
            "utf16" => m.transforms.push("utf16"),
            "expand" => {
                return Err(bad(name, ": placeholders need values from the deployment"));
            }
            other => return Err(bad(other, "")),
        }
    }
    // Combinations that would silently change the meaning.
    let special = [m.re, m.cidr, m.exists, m.fieldref, m.num.is_some()];
    let specials = special.iter().filter(|b| **b).count();
    if specials > 1 {
        return Err(bad(
            mods.join("|").as_str(),
            ": these modifiers cannot be combined",
        ));
    }
    if specials == 1 && !m.transforms.is_empty() {
        return Err(bad(
            m.transforms[0],
            ": a value transform cannot feed this comparison",
        ));
    }
    if (m.re || m.cidr || m.exists || m.num.is_some()) && m.position.is_some() {
        return Err(bad(
            m.position.unwrap_or(""),
            ": not with re, cidr, exists or a comparison",
        ));
    }
    if m.cased && (m.re || m.cidr || m.exists || m.num.is_some()) {
        return Err(bad("cased", ": only for text comparisons"));
    }
    if field.is_empty() && (m.exists || m.fieldref) {
        return Err(bad(
            if m.exists { "exists" } else { "fieldref" },
            ": needs a field",
        ));
    }
    Ok(m)
}

/// What a test of one value becomes: a text pattern or another check, on the entry's field.
enum Test {
    Text(Pattern),
    Check(Check),
}

/// Lowers `Field|mods: value` (or a keyword list when `field` is empty) to an expression.
pub fn field_entry(key: &str, value: &Yaml) -> Result<Node, SigmaError> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or("").trim().to_owned();
    let mods: Vec<&str> = parts.collect();
    let m = parse_mods(key, &field, &mods)?;
    let field_opt = if field.is_empty() {
        None
    } else {
        Some(field.clone())
    };
    let values: Vec<&Yaml> = match value {
        Yaml::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    if values.is_empty() {
        return Err(SigmaError::invalid(key, "has an empty list of values"));
    }
    let test = |t: Test| match t {
        Test::Text(pattern) => Node::Text {
            field: field_opt.clone(),
            pattern,
        },
        // `parse_mods` refused every check without a field.
        Test::Check(check) => Node::Check {
            field: field_opt.clone().unwrap_or_default(),
            check,
        },
    };
    let mut terms = Vec::new();
    for v in values {
        terms.push(one_value(key, &m, v, &test)?);
    }
    Ok(if m.all {
        Node::all(terms)
    } else {
        Node::any(terms)
    })
}

fn one_value(
    key: &str,
    m: &Mods,
    v: &Yaml,
    test: &dyn Fn(Test) -> Node,
) -> Result<Node, SigmaError> {
    if matches!(v, Yaml::Null) {
        if !m.transforms.is_empty() || m.position.is_some() || m.re || m.cidr || m.num.is_some() {
            return Err(SigmaError::invalid(
                key,
                "has a null value, which takes no modifier",
            ));
        }
        return Ok(test(Test::Check(Check::Null)));
    }
    if matches!(
        v,
        Yaml::Array(_) | Yaml::Hash(_) | Yaml::Alias(_) | Yaml::BadValue
    ) {
        return Err(SigmaError::invalid(
            key,
            "values must be strings, numbers, booleans or null",
        ));
    }
    if m.exists {
        let Yaml::Boolean(b) = v else {
            return Err(SigmaError::invalid(key, "`|exists` takes true or false"));
        };
        return Ok(test(Test::Check(Check::Exists(*b))));
    }
    let text = scalar_text(v).unwrap_or_default();
    if let Some(op) = m.num {
        let n = match v {
            Yaml::Integer(i) => Some(*i),
            Yaml::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(value) = n else {
            return Err(SigmaError::invalid(
                key,
                format!("`{text}` is not a whole number"),
            ));
        };
        return Ok(test(Test::Check(Check::Num { op, value })));
    }
    if m.re {
        let hir = compile_regex(key, &text, m.re_flags)?;
        return Ok(test(Test::Text(Pattern::Regex { source: text, hir })));
    }
    if m.cidr {
        return Ok(test(Test::Check(cidr(key, &text)?)));
    }
    if m.fieldref {
        let how = match m.position {
            Some("contains") => RefOp::Contains,
            Some("startswith") => RefOp::Prefix,
            Some("endswith") => RefOp::Suffix,
            _ => RefOp::Equal,
        };
        return Ok(test(Test::Check(Check::FieldRef {
            other: text,
            how,
            cased: m.cased,
        })));
    }
    // Text: the transforms in order, then the position, then case folding.
    let mut vals = vec![Val::Text(sigma_string(&text))];
    for (i, t) in m.transforms.iter().enumerate() {
        let mut next = Vec::new();
        for val in vals {
            match (*t, val) {
                ("windash", Val::Text(toks)) => {
                    next.extend(windash(&toks)?.into_iter().map(Val::Text));
                }
                ("utf16le" | "utf16be" | "utf16", Val::Text(toks)) => {
                    let Some(s) = plain(&toks) else {
                        return Err(wildcard_refusal(key, t));
                    };
                    if !matches!(m.transforms.get(i + 1), Some(&("base64" | "base64offset"))) {
                        return Err(SigmaError::UnsupportedModifier {
                            field: key.to_owned(),
                            modifier: wide_name(t).to_owned(),
                            detail:
                                ": only before `|base64` or `|base64offset` (event fields are text)"
                                    .into(),
                        });
                    }
                    let units = s.encode_utf16();
                    let bytes: Vec<u8> = match *t {
                        "utf16be" => units.flat_map(u16::to_be_bytes).collect(),
                        "utf16" => [0xFF, 0xFE]
                            .into_iter()
                            .chain(units.flat_map(u16::to_le_bytes))
                            .collect(),
                        _ => units.flat_map(u16::to_le_bytes).collect(),
                    };
                    next.push(Val::Bytes(bytes));
                }
                ("base64" | "base64offset", val) => {
                    let bytes = match val {
                        Val::Bytes(b) => b,
                        Val::Text(toks) => match plain(&toks) {
                            Some(s) => s.into_bytes(),
                            None => return Err(wildcard_refusal(key, t)),
                        },
                    };
                    if *t == "base64" {
                        next.push(Val::Text(B64.encode(&bytes).chars().map(Tok::Ch).collect()));
                    } else {
                        next.extend(
                            base64_offsets(&bytes)
                                .into_iter()
                                .map(|s| Val::Text(s.chars().map(Tok::Ch).collect())),
                        );
                    }
                }
                (t, Val::Bytes(_)) => {
                    return Err(SigmaError::UnsupportedModifier {
                        field: key.to_owned(),
                        modifier: t.to_owned(),
                        detail: ": not after `|wide`".into(),
                    });
                }
                (t, Val::Text(_)) => {
                    return Err(SigmaError::UnsupportedModifier {
                        field: key.to_owned(),
                        modifier: t.to_owned(),
                        detail: String::new(),
                    });
                }
            }
        }
        if next.len() > MAX_ALTERNATIVES {
            return Err(SigmaError::TooLarge {
                what: "the alternatives of one value",
                size: next.len(),
                limit: MAX_ALTERNATIVES,
            });
        }
        vals = next;
    }
    let mut alts = Vec::new();
    for val in vals {
        let Val::Text(mut toks) = val else {
            return Err(SigmaError::invalid(
                key,
                "ends in bytes (`|wide` needs `|base64`)",
            ));
        };
        match m.position {
            Some("contains") => {
                toks.insert(0, Tok::Any);
                toks.push(Tok::Any);
            }
            Some("startswith") => toks.push(Tok::Any),
            Some("endswith") => toks.insert(0, Tok::Any),
            _ => {}
        }
        alts.push(test(Test::Text(pattern(&toks, m.cased))));
    }
    Ok(Node::any(alts))
}

fn wide_name(t: &str) -> &str {
    if t == "utf16le" { "wide" } else { t }
}

fn wildcard_refusal(key: &str, t: &str) -> SigmaError {
    SigmaError::UnsupportedModifier {
        field: key.to_owned(),
        modifier: wide_name(t).to_owned(),
        detail: ": on a value with wildcards (the encoding of `*` is not a wildcard)".into(),
    }
}

/// The tokens as a [`Pattern`], case-folded unless `cased`; simple shapes get the fast forms.
fn pattern(toks: &[Tok], cased: bool) -> Pattern {
    let mut globs: Vec<Glob> = Vec::new();
    let mut lit = String::new();
    let flush = |lit: &mut String, globs: &mut Vec<Glob>| {
        if !lit.is_empty() {
            let text = if cased {
                std::mem::take(lit)
            } else {
                let mut buf = String::new();
                let folded = fold_case(lit, &mut buf).to_owned();
                lit.clear();
                folded
            };
            globs.push(Glob::Lit(text));
        }
    };
    for t in toks {
        match t {
            Tok::Ch(c) => lit.push(*c),
            Tok::Any => {
                flush(&mut lit, &mut globs);
                if globs.last() != Some(&Glob::Any) {
                    globs.push(Glob::Any);
                }
            }
            Tok::One => {
                flush(&mut lit, &mut globs);
                globs.push(Glob::One);
            }
        }
    }
    flush(&mut lit, &mut globs);
    let literal = |position, text: &String| Pattern::Literal {
        position,
        text: text.clone(),
        cased,
    };
    match globs.as_slice() {
        [] => literal(Position::Exact, &String::new()),
        [Glob::Lit(l)] => literal(Position::Exact, l),
        [Glob::Any, Glob::Lit(l), Glob::Any] => literal(Position::Contains, l),
        [Glob::Lit(l), Glob::Any] => literal(Position::Prefix, l),
        [Glob::Any, Glob::Lit(l)] => literal(Position::Suffix, l),
        _ => Pattern::Glob {
            parts: globs,
            cased,
        },
    }
}

fn cidr(key: &str, text: &str) -> Result<Check, SigmaError> {
    let bad = || {
        SigmaError::invalid(
            key,
            format!("`{text}` is not a network (`10.0.0.0/8`, `fe80::/10`)"),
        )
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, p.parse::<u8>().map_err(|_| bad())?),
        None => (text, u8::MAX),
    };
    let ip: std::net::IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let mut network = [0u8; 16];
    let (v4, max) = match ip {
        std::net::IpAddr::V4(a) => {
            network[..4].copy_from_slice(&a.octets());
            (true, 32)
        }
        std::net::IpAddr::V6(a) => {
            network = a.octets();
            (false, 128)
        }
    };
    let prefix = if prefix == u8::MAX { max } else { prefix };
    if prefix > max {
        return Err(bad());
    }
    Ok(Check::Cidr {
        network,
        prefix,
        v4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Yaml {
        Yaml::String(text.into())
    }

    fn pattern_of(e: &Node) -> &Pattern {
        match e {
            Node::Text { pattern, .. } => pattern,
            other => panic!("not a text test: {other:?}"),
        }
    }

    fn lit(position: Position, text: &str, cased: bool) -> Pattern {
        Pattern::Literal {
            position,
            text: text.into(),
            cased,
        }
    }

    fn check_of(e: &Node) -> &Check {
        match e {
            Node::Check { check, .. } => check,
            other => panic!("not a check: {other:?}"),
        }
    }

    #[test]
    fn positions_wildcards_and_case() {
        let e = field_entry("Image|endswith", &s("\\CMD.exe")).unwrap();
        assert_eq!(pattern_of(&e), &lit(Position::Suffix, "\\cmd.exe", false));
        let e = field_entry("CommandLine|contains|cased", &s("-Enc")).unwrap();
        assert_eq!(pattern_of(&e), &lit(Position::Contains, "-Enc", true));
        let e = field_entry("Image", &s("C:\\Win*\\a?.exe")).unwrap();
        assert_eq!(
            pattern_of(&e),
            &Pattern::Glob {
                parts: vec![
                    Glob::Lit("c:\\win".into()),
                    Glob::Any,
                    Glob::Lit("\\a".into()),
                    Glob::One,
                    Glob::Lit(".exe".into())
                ],
                cased: false
            }
        );
        let e = field_entry("Image", &s("a\\*b")).unwrap();
        assert_eq!(pattern_of(&e), &lit(Position::Exact, "a*b", false));
        let e = field_entry("EventID", &Yaml::Integer(4688)).unwrap();
        assert_eq!(pattern_of(&e), &lit(Position::Exact, "4688", false));
    }

    #[test]
    fn lists_or_and_all() {
        let list = Yaml::Array(vec![s("a"), s("b")]);
        assert!(matches!(field_entry("F|contains", &list).unwrap(), Node::Or(v) if v.len() == 2));
        assert!(
            matches!(field_entry("F|contains|all", &list).unwrap(), Node::And(v) if v.len() == 2)
        );
    }

    #[test]
    fn windash_spells_every_dash() {
        let e = field_entry("CommandLine|contains|windash", &s(" -enc ")).unwrap();
        let Node::Or(alts) = e else { panic!("{e:?}") };
        let pats: Vec<String> = alts
            .iter()
            .map(|a| match pattern_of(a) {
                Pattern::Literal {
                    position: Position::Contains,
                    text,
                    ..
                } => text.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(pats, [" -enc ", " /enc ", " –enc ", " —enc ", " ―enc "]);
        // A dash inside a word is not an option dash.
        let e = field_entry("CommandLine|windash", &s("a-b")).unwrap();
        assert_eq!(pattern_of(&e), &lit(Position::Exact, "a-b", false));
    }

    #[test]
    fn base64_and_offsets_and_wide() {
        let e = field_entry("CommandLine|base64", &s("ab")).unwrap();
        // Base64 text is folded like any other Sigma string (matching is case-insensitive).
        assert_eq!(pattern_of(&e), &lit(Position::Exact, "ywi=", false));
        // The classic example from the Sigma specification.
        let offs = base64_offsets(b"/bin/sh");
        assert_eq!(offs, ["L2Jpbi9za", "9iaW4vc2", "vYmluL3No"]);
        let e = field_entry("CommandLine|wide|base64offset|contains", &s("ping")).unwrap();
        let Node::Or(alts) = e else { panic!() };
        assert_eq!(alts.len(), 3);
        assert_eq!(
            pattern_of(&alts[0]),
            &lit(
                Position::Contains,
                fold_case(&B64.encode(b"p\0i\0n\0g\0")[..10], &mut String::new()),
                false
            )
        );
    }

    #[test]
    fn special_checks() {
        let e = field_entry("F|exists", &Yaml::Boolean(false)).unwrap();
        assert_eq!(check_of(&e), &Check::Exists(false));
        let e = field_entry("F", &Yaml::Null).unwrap();
        assert_eq!(check_of(&e), &Check::Null);
        let e = field_entry("F|gte", &Yaml::Integer(5)).unwrap();
        assert_eq!(
            check_of(&e),
            &Check::Num {
                op: NumOp::Gte,
                value: 5
            }
        );
        let e = field_entry("DestinationIp|cidr", &s("192.168.0.0/16")).unwrap();
        let Check::Cidr {
            prefix,
            v4,
            network,
        } = check_of(&e)
        else {
            panic!()
        };
        assert_eq!(
            (*prefix, *v4, &network[..4]),
            (16, true, &[192, 168, 0, 0][..])
        );
        let e = field_entry("F|fieldref|startswith", &s("G")).unwrap();
        assert!(matches!(
            check_of(&e),
            Check::FieldRef {
                how: RefOp::Prefix,
                ..
            }
        ));
        let e = field_entry("F|re", &s("a+b")).unwrap();
        assert!(matches!(pattern_of(&e), Pattern::Regex { source, .. } if source == "a+b"));
    }

    #[test]
    fn refusals_name_the_modifier() {
        let cases = [
            ("F|expand", s("%x%"), "`|expand`"),
            ("F|frobnicate", s("x"), "`|frobnicate`"),
            ("F|wide", s("x"), "`|wide`"),
            ("F|base64", s("a*"), "`|base64`"),
            ("F|re|contains", s("a"), "`|contains`"),
            ("F|contains|startswith", s("a"), "`|startswith`"),
            ("F|cidr", s("nonsense"), "not a network"),
            ("F|gt", s("ten"), "not a whole number"),
            ("F|exists", s("yes"), "`|exists` takes true or false"),
        ];
        for (key, value, needle) in cases {
            let e = field_entry(key, &value).unwrap_err().to_string();
            assert!(e.contains(needle), "{key}: {e}");
        }
        let e = field_entry("F|contains|windash", &s("-a -b -c -d -e")).unwrap_err();
        assert!(matches!(e, SigmaError::TooLarge { .. }), "{e}");
    }
}
