//! One rule module per Sigma rule: the evaluator's WebAssembly with the rule's program added.
//!
//! ```text
//!  evaluator module (built once)            rule module (one per Sigma rule)
//!  ─────────────────────────────            ──────────────────────────────────────────────
//!  memory: min N pages                      memory: min N + k pages
//!  data:  [.. "rulebox-sigma-p1" 0 0 ..]    data:  [.. "rulebox-sigma-p1" ptr len ..]   (patched)
//!                                                  + segment at ptr = N × 64 KiB: the program
//! ```
//!
//! The program goes in pages past the module's initial memory: the guest allocator only ever grows
//! memory past its size at start, so nothing else writes there. The guest reads the locator, checks
//! the range against its memory, and decodes the program inside the sandbox.

use rulebox_sigma_eval::{LOCATOR_MAGIC, Program};

use crate::SigmaError;

const PAGE: usize = 65536;
/// The largest program accepted (postcard bytes).
pub const MAX_PROGRAM_BYTES: usize = 4 << 20;

const SECTION_MEMORY: u8 = 5;
const SECTION_DATA: u8 = 11;
const SECTION_DATA_COUNT: u8 = 12;

fn bad(message: impl Into<String>) -> SigmaError {
    SigmaError::Evaluator(message.into())
}

fn read_uleb(bytes: &[u8], pos: &mut usize) -> Result<u64, SigmaError> {
    let mut result = 0u64;
    let mut shift = 0;
    loop {
        let b = *bytes
            .get(*pos)
            .ok_or_else(|| bad("truncated LEB128 number"))?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(result);
        }
        shift += 7;
        if shift > 63 {
            return Err(bad("LEB128 number too long"));
        }
    }
}

fn write_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = u8::try_from(v & 0x7f).unwrap_or(0);
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn write_sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let byte = u8::try_from(v & 0x7f).unwrap_or(0);
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(out: &mut Vec<u8>, id: u8, content: &[u8]) {
    out.push(id);
    write_uleb(out, content.len() as u64);
    out.extend_from_slice(content);
}

/// Builds the rule module for `program` from the evaluator module `evaluator`
/// (`rulebox_example_artifacts::SIGMA_EVAL`, or any build of `rulebox-sigma-eval`).
pub fn build_module(program: &Program<'_>, evaluator: &[u8]) -> Result<Vec<u8>, SigmaError> {
    let data = program
        .to_bytes()
        .map_err(|e| bad(format!("the program does not encode: {e}")))?;
    if data.len() > MAX_PROGRAM_BYTES {
        return Err(SigmaError::TooLarge {
            what: "the compiled program",
            size: data.len(),
            limit: MAX_PROGRAM_BYTES,
        });
    }
    if evaluator.len() < 8 || &evaluator[..4] != b"\0asm" || evaluator[4..8] != [1, 0, 0, 0] {
        return Err(bad("not a WebAssembly core module"));
    }
    // First pass: the memory's initial size (to place the program after it).
    let mut sections: Vec<(u8, &[u8])> = Vec::new();
    let mut pos = 8;
    while pos < evaluator.len() {
        let id = evaluator[pos];
        pos += 1;
        let len =
            usize::try_from(read_uleb(evaluator, &mut pos)?).map_err(|_| bad("section size"))?;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= evaluator.len())
            .ok_or_else(|| bad("a section runs past the end"))?;
        sections.push((id, &evaluator[pos..end]));
        pos = end;
    }
    let memory = sections
        .iter()
        .find(|(id, _)| *id == SECTION_MEMORY)
        .ok_or_else(|| bad("no memory section (an imported memory cannot take a program)"))?
        .1;
    let mut p = 0;
    if read_uleb(memory, &mut p)? != 1 {
        return Err(bad("not exactly one memory"));
    }
    let flags = *memory.get(p).ok_or_else(|| bad("truncated memory"))?;
    p += 1;
    if flags > 1 {
        return Err(bad(format!(
            "memory flags {flags:#x} (shared or 64-bit memory)"
        )));
    }
    let min = read_uleb(memory, &mut p)?;
    let max = if flags == 1 {
        Some(read_uleb(memory, &mut p)?)
    } else {
        None
    };
    let pages = data.len().div_ceil(PAGE).max(1) as u64;
    let new_min = min + pages;
    if max.is_some_and(|m| m < new_min) {
        return Err(bad("the memory's maximum leaves no room for the program"));
    }
    let ptr = u32::try_from(min * PAGE as u64).map_err(|_| bad("memory too large"))?;
    let len = u32::try_from(data.len()).map_err(|_| bad("program too large"))?;

    let mut out = evaluator[..8].to_vec();
    let mut patched = 0usize;
    let mut saw_data = false;
    for (id, content) in sections {
        match id {
            SECTION_MEMORY => {
                let mut m = Vec::new();
                write_uleb(&mut m, 1);
                m.push(flags);
                write_uleb(&mut m, new_min);
                if let Some(max) = max {
                    write_uleb(&mut m, max);
                }
                section(&mut out, id, &m);
            }
            SECTION_DATA_COUNT => {
                let mut q = 0;
                let n = read_uleb(content, &mut q)?;
                let mut d = Vec::new();
                write_uleb(&mut d, n + 1);
                section(&mut out, id, &d);
            }
            SECTION_DATA => {
                saw_data = true;
                let mut q = 0;
                let n = read_uleb(content, &mut q)?;
                let mut body = content[q..].to_vec();
                // Patch the locator: the 8 bytes after the one occurrence of the magic.
                let hits: Vec<usize> = body
                    .windows(LOCATOR_MAGIC.len())
                    .enumerate()
                    .filter(|(_, w)| *w == LOCATOR_MAGIC)
                    .map(|(i, _)| i)
                    .collect();
                patched += hits.len();
                if let [at] = hits[..] {
                    let slot = at + LOCATOR_MAGIC.len();
                    let Some(place) = body.get_mut(slot..slot + 8) else {
                        return Err(bad("the locator is cut short"));
                    };
                    if place.iter().any(|b| *b != 0) {
                        return Err(bad("the evaluator already holds a program"));
                    }
                    place[..4].copy_from_slice(&ptr.to_le_bytes());
                    place[4..].copy_from_slice(&len.to_le_bytes());
                }
                let mut d = Vec::new();
                write_uleb(&mut d, n + 1);
                d.extend_from_slice(&body);
                // An active segment in memory 0 at `ptr`: flags 0, `i32.const ptr; end`, bytes.
                d.push(0);
                d.push(0x41);
                write_sleb(&mut d, i64::from(ptr));
                d.push(0x0b);
                write_uleb(&mut d, data.len() as u64);
                d.extend_from_slice(&data);
                section(&mut out, id, &d);
            }
            // Custom sections (names, producers) are not needed to run.
            0 => {}
            _ => section(&mut out, id, content),
        }
    }
    if !saw_data || patched != 1 {
        return Err(bad(format!(
            "expected the program locator once in the data section, found it {patched} times"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_round_trips() {
        for v in [0u64, 1, 127, 128, 300, 1 << 20, u64::from(u32::MAX)] {
            let mut out = Vec::new();
            write_uleb(&mut out, v);
            let mut p = 0;
            assert_eq!(read_uleb(&out, &mut p).unwrap(), v);
            assert_eq!(p, out.len());
        }
        let mut out = Vec::new();
        write_sleb(&mut out, 1_114_112);
        assert_eq!(out, [0x80, 0x80, 0xc4, 0x00]);
        out.clear();
        write_sleb(&mut out, 63);
        assert_eq!(out, [63]);
        out.clear();
        write_sleb(&mut out, 64);
        assert_eq!(out, [0xc0, 0x00]);
    }

    #[test]
    fn refuses_what_is_not_an_evaluator() {
        let p = crate::compile(
            "title: t\nid: x\nlogsource: {category: process_creation, product: windows}\ndetection: {s: {Image: a}, condition: s}\n",
        )
        .unwrap();
        assert!(matches!(
            build_module(&p, b"nope"),
            Err(SigmaError::Evaluator(_))
        ));
        // A module with a memory but without the locator.
        let wasm = [
            0, b'a', b's', b'm', 1, 0, 0, 0, // header
            5, 3, 1, 0, 1, // memory section: one memory, min 1
        ];
        let e = build_module(&p, &wasm).unwrap_err().to_string();
        assert!(e.contains("locator"), "{e}");
    }
}
