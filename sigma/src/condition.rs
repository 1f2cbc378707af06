//! The Sigma `condition` language: `and`, `or`, `not`, parentheses, `1 of` / `all of` a selection
//! name pattern or `them`.

use crate::ir::Node;

use crate::SigmaError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    Word(String),
}

fn tokens(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c == '(' || c == ')' || c.is_whitespace() {
            if !word.is_empty() {
                out.push(Tok::Word(std::mem::take(&mut word)));
            }
            match c {
                '(' => out.push(Tok::Open),
                ')' => out.push(Tok::Close),
                _ => {}
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push(Tok::Word(word));
    }
    out
}

/// Whether a selection `name` matches a name pattern with `*` wildcards.
fn name_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    text: &'a str,
    selections: &'a [(String, Node)],
    used: &'a mut Vec<bool>,
}

const KEYWORDS: &[&str] = &["and", "or", "not", "of", "them", "all", "any"];

impl Parser<'_> {
    fn err(&self, problem: impl Into<String>) -> SigmaError {
        SigmaError::Condition {
            condition: self.text.to_owned(),
            problem: problem.into(),
        }
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self, depth: usize) -> Result<Node, SigmaError> {
        let mut terms = vec![self.and(depth)?];
        while self.peek_word("or") {
            self.pos += 1;
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Node::Or(terms)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Node, SigmaError> {
        let mut terms = vec![self.not(depth)?];
        while self.peek_word("and") {
            self.pos += 1;
            terms.push(self.not(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Node::And(terms)
        })
    }

    fn not(&mut self, depth: usize) -> Result<Node, SigmaError> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Node::Not(Box::new(self.not(depth + 1)?)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Node, SigmaError> {
        if depth > 32 {
            return Err(self.err("nested more than 32 deep"));
        }
        match self.toks.get(self.pos).cloned() {
            None => Err(self.err("ends where a selection, `not` or `(` was expected")),
            Some(Tok::Close) => Err(self.err("unexpected `)`")),
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or(depth + 1)?;
                if self.toks.get(self.pos) != Some(&Tok::Close) {
                    return Err(self.err("a `(` is never closed"));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Word(w)) => {
                self.pos += 1;
                let lower = w.to_ascii_lowercase();
                if self.peek_word("of") {
                    self.pos += 1;
                    let all = match lower.as_str() {
                        "all" => true,
                        "1" | "any" => false,
                        _ => {
                            return Err(SigmaError::Unsupported(format!(
                                "condition construct `{w} of` (only `1 of` and `all of` are Sigma)"
                            )));
                        }
                    };
                    let Some(Tok::Word(target)) = self.toks.get(self.pos).cloned() else {
                        return Err(self.err(format!("`{w} of` needs a selection name or `them`")));
                    };
                    self.pos += 1;
                    let picked: Vec<usize> = if target.eq_ignore_ascii_case("them") {
                        (0..self.selections.len())
                            .filter(|&i| !self.selections[i].0.starts_with('_'))
                            .collect()
                    } else {
                        (0..self.selections.len())
                            .filter(|&i| name_matches(&target, &self.selections[i].0))
                            .collect()
                    };
                    if picked.is_empty() {
                        return Err(self.err(format!("`{w} of {target}` matches no selection")));
                    }
                    for &i in &picked {
                        self.used[i] = true;
                    }
                    let terms: Vec<Node> = picked
                        .iter()
                        .map(|&i| self.selections[i].1.clone())
                        .collect();
                    return Ok(if all {
                        Node::And(terms)
                    } else {
                        Node::Or(terms)
                    });
                }
                if w.contains('|') {
                    return Err(SigmaError::Unsupported(format!(
                        "condition construct `{w}` (aggregations and pipes are not supported)"
                    )));
                }
                if KEYWORDS.contains(&lower.as_str()) || lower == "near" {
                    return Err(if lower == "near" {
                        SigmaError::Unsupported("condition construct `near`".into())
                    } else {
                        self.err(format!("unexpected `{w}`"))
                    });
                }
                let Some(i) = self.selections.iter().position(|(n, _)| *n == w) else {
                    return Err(self.err(format!("no selection is named `{w}`")));
                };
                self.used[i] = true;
                Ok(self.selections[i].1.clone())
            }
        }
    }
}

/// Parses `text` over the named `selections`. Returns the expression and, per selection, whether the
/// condition uses it.
pub fn parse(text: &str, selections: &[(String, Node)]) -> Result<(Node, Vec<bool>), SigmaError> {
    if text.contains('|') {
        return Err(SigmaError::Unsupported(format!(
            "condition construct `|` in `{text}` (aggregations such as `| count()` are not supported)"
        )));
    }
    let mut used = vec![false; selections.len()];
    let mut p = Parser {
        toks: tokens(text),
        pos: 0,
        text,
        selections,
        used: &mut used,
    };
    let e = p.or(0)?;
    if p.pos != p.toks.len() {
        let rest = match &p.toks[p.pos] {
            Tok::Open => "(".to_owned(),
            Tok::Close => ")".to_owned(),
            Tok::Word(w) => w.clone(),
        };
        return Err(p.err(format!("unexpected `{rest}`")));
    }
    Ok((e, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(names: &[&str]) -> Vec<(String, Node)> {
        // Each selection is a distinct constant-shaped expression we can recognise.
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), Node::Kind(rulebox_sdk::EventKinds(1 << i))))
            .collect()
    }

    fn k(i: u32) -> Node {
        Node::Kind(rulebox_sdk::EventKinds(1 << i))
    }

    #[test]
    fn precedence_and_groups() {
        let s = sel(&["a", "b", "c"]);
        let (e, _) = parse("a or b and not c", &s).unwrap();
        assert_eq!(
            e,
            Node::Or(vec![k(0), Node::And(vec![k(1), Node::Not(Box::new(k(2)))])])
        );
        let (e, _) = parse("(a or b) and c", &s).unwrap();
        assert_eq!(e, Node::And(vec![Node::Or(vec![k(0), k(1)]), k(2)]));
    }

    #[test]
    fn of_patterns_and_them() {
        let s = sel(&["selection_a", "selection_b", "filter_x", "_hidden"]);
        let (e, used) = parse("all of selection_* and not 1 of filter*", &s).unwrap();
        assert_eq!(
            e,
            Node::And(vec![
                Node::And(vec![k(0), k(1)]),
                Node::Not(Box::new(Node::Or(vec![k(2)])))
            ])
        );
        assert_eq!(used, vec![true, true, true, false]);
        let (e, _) = parse("1 of them", &s).unwrap();
        assert_eq!(e, Node::Or(vec![k(0), k(1), k(2)]));
        assert!(name_matches("sel*_x*", "sel_a_xy"));
        assert!(!name_matches("sel*_x", "sel_a_xy"));
    }

    #[test]
    fn refusals_name_the_construct() {
        let s = sel(&["a"]);
        let e = parse("a | count() > 5", &s).unwrap_err().to_string();
        assert!(e.contains("`|`"), "{e}");
        let e = parse("2 of a*", &s).unwrap_err().to_string();
        assert!(e.contains("`2 of`"), "{e}");
        let e = parse("a and b", &s).unwrap_err().to_string();
        assert!(e.contains("no selection is named `b`"), "{e}");
        let e = parse("(a", &s).unwrap_err().to_string();
        assert!(e.contains("never closed"), "{e}");
        let e = parse("1 of x*", &s).unwrap_err().to_string();
        assert!(e.contains("matches no selection"), "{e}");
        let e = parse("a near a", &s).unwrap_err().to_string();
        assert!(
            e.contains("unexpected `near`") || e.contains("`near`"),
            "{e}"
        );
    }
}
