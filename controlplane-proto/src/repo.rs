//! The static content repository's layout: the file names a publisher writes and a fetcher reads,
//! relative to the repository's base URL or folder.
//!
//! ```text
//! root/<N>.root.json          the root chain, N = 1, 2, ... (exact signed bytes)
//! releases/<R>/manifest.json  the signed manifest (exact bytes)
//! modules/<sha256>.wasm       module and engine bytes; shared by releases, stored once
//! data/<sha256>.rules         a rule pack's data; shared by releases, stored once
//! reverts/<R>.revert.json     a signed revert of release R
//! timestamp.json              signed by the timestamp role; the only file that changes
//! ```
//!
//! Every file but `timestamp.json` is immutable once published, so any HTTP server or CDN may cache
//! it forever; `timestamp.json` should be served with a short cache lifetime.

/// The only file of the repository that changes.
pub const TIMESTAMP_FILE: &str = "timestamp.json";

/// `root/<version>.root.json`.
pub fn root_file(version: u64) -> String {
    format!("root/{version}.root.json")
}

/// `releases/<release>/manifest.json`.
pub fn manifest_file(release: u64) -> String {
    format!("releases/{release}/manifest.json")
}

/// `modules/<sha256>.wasm`: the same path a manifest entry's `file` names inside a bundle.
pub fn module_file(sha256: &str) -> String {
    rulebox_runtime::content::module_file_name(sha256)
}

/// `data/<sha256>.rules`: the same path a pack entry's `file` names inside a bundle.
pub fn data_file(sha256: &str) -> String {
    rulebox_runtime::content::data_file_name(sha256)
}

/// `reverts/<release>.revert.json`.
pub fn revert_file(release: u64) -> String {
    format!("reverts/{release}.revert.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_documented_layout() {
        assert_eq!(root_file(2), "root/2.root.json");
        assert_eq!(manifest_file(42), "releases/42/manifest.json");
        assert_eq!(module_file("ab"), "modules/ab.wasm");
        assert_eq!(data_file("ab"), "data/ab.rules");
        assert_eq!(revert_file(42), "reverts/42.revert.json");
    }
}
