//! Case-insensitive text matching without allocation (ASCII case folding, as Windows paths need).

/// Whether `a` equals `b`, ignoring ASCII case.
pub fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether `text` starts with `prefix`, ignoring ASCII case.
pub fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Whether `text` ends with `suffix`, ignoring ASCII case.
pub fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Whether `text` contains `needle`, ignoring ASCII case.
pub fn contains_ignore_case(text: &str, needle: &str) -> bool {
    let (t, n) = (text.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if n.len() > t.len() {
        return false;
    }
    let first = n[0].to_ascii_lowercase();
    (0..=t.len() - n.len())
        .any(|i| t[i].to_ascii_lowercase() == first && t[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(contains_ignore_case(
            "C:\\Windows\\System32\\CMD.exe",
            "cmd.EXE"
        ));
        assert!(!contains_ignore_case("abc", "abcd"));
        assert!(contains_ignore_case("abc", ""));
        assert!(starts_with_ignore_case("PowerShell -enc", "powershell"));
        assert!(!starts_with_ignore_case("p", "powershell"));
        assert!(ends_with_ignore_case("x\\WINWORD.EXE", "\\winword.exe"));
        assert!(!ends_with_ignore_case("exe", "\\winword.exe"));
        assert!(eq_ignore_case("LSASS.exe", "lsass.EXE"));
        // Multi-byte text must not panic on a slice boundary.
        assert!(!contains_ignore_case("ééé", "x"));
        assert!(!ends_with_ignore_case("é", "x"));
    }
}
