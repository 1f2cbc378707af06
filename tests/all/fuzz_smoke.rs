//! A short deterministic run of each fuzz target (`tests/fuzz.rs`) on seeded random inputs, so the
//! targets keep compiling and any regression in what they guard shows up in `cargo test`. The long
//! runs use cargo-fuzz: see `docs/fuzzing.md`.

use rulebox_tests::fuzz;

/// `count` inputs of up to `max_len` bytes from a fixed-seed xorshift generator.
fn inputs(seed: u64, count: usize, max_len: usize) -> Vec<Vec<u8>> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = usize::try_from(next() % (max_len as u64 + 1)).unwrap_or(0);
            (0..len).map(|_| next().to_le_bytes()[0]).collect()
        })
        .collect()
}

#[test]
fn fuzz_smoke_load_module() {
    let mut stages = std::collections::BTreeMap::new();
    for input in inputs(1, 80, 2048) {
        *stages.entry(fuzz::load_module(&input)).or_insert(0) += 1;
    }
    eprintln!("fuzz_smoke_load_module: {stages:?}");
    // The run reaches every stage: generated modules are refused at compile and load time, and
    // shaped ones load and run (calling the log import with arbitrary arguments).
    for stage in [
        fuzz::Stage::CompileRefused,
        fuzz::Stage::LoadRefused,
        fuzz::Stage::Ran,
    ] {
        assert!(
            stages.contains_key(&stage),
            "{stage:?} never reached: {stages:?}"
        );
    }
}

#[test]
fn fuzz_smoke_decode_event() {
    for input in inputs(2, 400, 512) {
        fuzz::decode_event(&input);
    }
    // Structured inputs too: valid events with bytes flipped.
    let line =
        br#"{"host":"h","pid":1,"data":{"ProcessStart":{"Image":"a.exe","ParentProcessId":7}}}"#;
    for (i, flip) in inputs(3, 200, 4).into_iter().enumerate() {
        let mut bytes = line.to_vec();
        for b in flip {
            let at = (usize::from(b) + i) % bytes.len();
            bytes[at] = bytes[at].wrapping_add(b | 1);
        }
        fuzz::decode_event(&bytes);
    }
    // Wire-format events (what a rule reads in place) with bytes flipped, including the header and
    // slot table: random bytes alone rarely get past the header check.
    let events = rulebox_runtime::events::EventReader::new(std::io::BufReader::new(
        rulebox_example_artifacts::DEMO_EVENTS.as_bytes(),
    ))
    .filter_map(Result::ok)
    .map(|r| r.event.to_bytes().expect("encodes"))
    .collect::<Vec<_>>();
    assert!(events.len() > 30);
    for (i, flip) in inputs(5, 600, 3).into_iter().enumerate() {
        let mut bytes = events[i % events.len()].clone();
        for b in flip {
            let at = (usize::from(b) * 7 + i) % bytes.len().min(120 + i % 400);
            bytes[at] = bytes[at].wrapping_add(b | 1);
        }
        fuzz::decode_event(&bytes);
    }
}

#[test]
fn fuzz_smoke_parse_content() {
    for input in inputs(4, 150, 512) {
        fuzz::parse_content(&input);
    }
    fuzz::parse_content(br#"{"signed":{"format":1},"signatures":[]}"#);
}

#[test]
fn fuzz_smoke_decode_result() {
    for input in inputs(5, 150, 512) {
        fuzz::decode_result(&input);
    }
    // Structured inputs too: real results with bytes flipped, so that both verdicts occur (random
    // bytes almost never decode).
    let mut list = rulebox_sdk::Detections::new("fuzz-rule", rulebox_sdk::Severity::Low);
    list.detect("first")
        .field("Image", "C:\\a.exe")
        .field("Ünï", "välue");
    list.detect("second");
    let good = list.as_bytes().to_vec();
    assert!(fuzz::decode_result(&good), "a real result decodes");
    let (mut accepted, mut refused) = (0, 0);
    for (i, flip) in inputs(6, 300, 2).into_iter().enumerate() {
        let mut bytes = good.clone();
        for b in flip {
            let at = (usize::from(b) + i) % bytes.len();
            bytes[at] = bytes[at].wrapping_add(b | 1);
        }
        if fuzz::decode_result(&bytes) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!("fuzz_smoke_decode_result: {accepted} flipped results accepted, {refused} refused");
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn fuzz_smoke_pack_calls() {
    let mut running = 0;
    for input in inputs(7, 120, 256) {
        if fuzz::pack_calls(&input) {
            running += 1;
        }
    }
    // A well-formed script too: every event, every rule, a detection-free close: the pack runs on.
    let mut script = Vec::new();
    for e in 0..17u32 {
        script.push(0);
        script.extend_from_slice(&e.to_le_bytes());
        script.extend_from_slice(&0u32.to_le_bytes());
        for r in 0..4u32 {
            script.push(1);
            script.extend_from_slice(&r.to_le_bytes());
            script.extend_from_slice(&0u32.to_le_bytes());
        }
    }
    assert!(
        fuzz::pack_calls(&script),
        "a well-formed script keeps the pack running"
    );
    // Scripts that begin well and go astray: events and rules in order, then results at arbitrary
    // pointers and lengths, and arbitrary steps.
    for (i, tail) in inputs(8, 60, 90).into_iter().enumerate() {
        let mut s = Vec::new();
        let step = |s: &mut Vec<u8>, op: u8, a: u32, b: u32| {
            s.push(op);
            s.extend_from_slice(&a.to_le_bytes());
            s.extend_from_slice(&b.to_le_bytes());
        };
        step(&mut s, 0, 0, 0);
        step(&mut s, 1, u32::try_from(i % 5).unwrap(), 0);
        for chunk in tail.chunks(8) {
            let word = |k: usize| {
                chunk
                    .get(k..k + 4)
                    .map_or(0, |w| u32::from_le_bytes(w.try_into().unwrap()))
            };
            step(&mut s, 2, word(0), word(4) % 512);
            step(&mut s, 1, word(0) % 6, 0);
        }
        fuzz::pack_calls(&s);
    }
    eprintln!("fuzz_smoke_pack_calls: the pack still ran after {running} of 120 random scripts");
}
