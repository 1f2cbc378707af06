//! Compiled Sigma rules as rule data for the evaluator pack (the layout is
//! `rulebox_sigma_eval::SigmaPack`'s: one self-delimiting record per rule, in index order).
//!
//! ```text
//!  out/sigma.wasm    the engine (rulebox_example_artifacts::SIGMA_EVAL), compiled once by the host
//!  out/sigma.rules   its rule data: record × rules, each "RBSG", u32 LE length, postcard program
//! ```

use rulebox_sigma_eval::{Program, push_record};

use crate::SigmaError;
use crate::module::MAX_PROGRAM_BYTES;

/// The record of one compiled rule: what [`rule_data`] concatenates, and what a store can keep per
/// rule (a pack's data is its rules' records back to back).
pub fn rule_record(program: &Program<'_>) -> Result<Vec<u8>, SigmaError> {
    let bytes = program.to_bytes().map_err(|e| {
        SigmaError::Evaluator(format!("the program does not encode: {e}"))
    })?;
    if bytes.len() > MAX_PROGRAM_BYTES {
        return Err(SigmaError::TooLarge {
            what: "the compiled program",
            size: bytes.len(),
            limit: MAX_PROGRAM_BYTES,
        });
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    push_record(&mut out, &bytes);
    Ok(out)
}

/// The rule data of a pack of `programs`, in order.
pub fn rule_data<'a>(
    programs: impl IntoIterator<Item = &'a Program<'a>>,
) -> Result<Vec<u8>, SigmaError> {
    let mut out = Vec::new();
    for p in programs {
        out.extend_from_slice(&rule_record(p)?);
    }
    Ok(out)
}
