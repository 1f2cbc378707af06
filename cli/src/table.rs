//! Text tables for people: every column as wide as its widest cell, so a long rule id or module
//! path never pushes the columns after it out of line, and every cell shown through
//! [`printable`] (rule ids, paths and titles can come from content).

use rulebox_runtime::text::printable;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text, left-aligned.
    Left,
    /// Numbers, right-aligned.
    Right,
}

/// A table: a header and rows of cells.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(name, align)| ((*name).to_owned(), *align))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty, extra ones ignored).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| printable(&c).into_owned())
                .collect(),
        );
    }

    /// The header line, then one line per row, in order.
    pub fn lines(&self) -> Vec<String> {
        let n = self.columns.len();
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let widths: Vec<usize> = (0..n)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| cell(r, i).chars().count())
                    .chain(std::iter::once(self.columns[i].0.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<String>| {
            let mut out = String::new();
            for (i, text) in cells.iter().enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = widths[i].saturating_sub(text.chars().count());
                let last = i + 1 == n;
                match self.columns[i].1 {
                    Align::Right => {
                        out.extend(std::iter::repeat_n(' ', pad));
                        out.push_str(text);
                    }
                    Align::Left => {
                        out.push_str(text);
                        if !last {
                            out.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
            }
            out.trim_end().to_owned()
        };
        std::iter::once(line(self.columns.iter().map(|c| c.0.clone()).collect()))
            .chain(
                self.rows
                    .iter()
                    .map(|r| line((0..n).map(|i| cell(r, i)).collect())),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_stay_aligned_whatever_the_length_of_a_cell() {
        let mut t = Table::new(&[
            ("RULE", Align::Left),
            ("EVENTS", Align::Right),
            ("STATE", Align::Left),
        ]);
        t.row(vec!["short".into(), "5".into(), "active".into()]);
        let long = format!("a-very-long-rule-id-{}", "x".repeat(100));
        t.row(vec![long.clone(), "12345".into(), "QUARANTINED".into()]);
        t.row(vec!["esc\u{1b}[2J".into(), "1".into(), "active".into()]);
        let lines = t.lines();
        assert_eq!(lines.len(), 4);
        // The column after the long id starts at the same place on every line.
        let at = lines[2].find("12345").unwrap() + "12345".len();
        for l in &lines {
            let state = l.split_whitespace().last().unwrap();
            assert_eq!(l.find(state).unwrap(), at + 2, "{lines:#?}");
        }
        assert!(lines[2].starts_with(&long));
        assert!(lines[3].starts_with("esc\\u{1b}[2J"), "{lines:#?}");
        assert!(!lines.iter().any(|l| l.contains('\u{1b}')));
    }
}
