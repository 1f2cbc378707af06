//! The per-rule [`ResourceLimiter`]: caps linear memory and table growth.

use wasmtime::ResourceLimiter;

/// The error a rule's growth past its memory cap traps with (recovered by downcasting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rule tried to grow its memory to {desired} bytes; its cap is {cap} bytes")]
pub struct MemoryLimitExceeded {
    /// The size the rule asked for.
    pub desired: usize,
    /// The rule's cap.
    pub cap: u64,
}

/// The error a rule's growth past its table cap traps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rule tried to grow a table to {desired} elements; its cap is {cap}")]
pub struct TableLimitExceeded {
    /// The size the rule asked for.
    pub desired: usize,
    /// The rule's cap.
    pub cap: u64,
}

/// Caps one rule's memory and tables, and remembers the high-water mark.
#[derive(Debug, Clone)]
pub(crate) struct RuleLimiter {
    pub(crate) memory_cap: u64,
    pub(crate) table_cap: u64,
    /// Largest memory size the rule has had, in bytes.
    pub(crate) memory_high_water: usize,
}

impl RuleLimiter {
    pub(crate) fn new(memory_cap: u64, table_cap: u64) -> RuleLimiter {
        RuleLimiter {
            memory_cap,
            table_cap,
            memory_high_water: 0,
        }
    }
}

impl ResourceLimiter for RuleLimiter {
    /// Refuses growth past the cap with a trap ([`MemoryLimitExceeded`]) rather than a failed
    /// `memory.grow`, so the rule is stopped at the allocation that crossed its budget and the reason
    /// is exact. (A guest whose allocator handled `-1` would only fail later, somewhere else.)
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if u64::try_from(desired).map_or(true, |d| d > self.memory_cap) {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                desired,
                cap: self.memory_cap,
            }));
        }
        self.memory_high_water = self.memory_high_water.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if u64::try_from(desired).map_or(true, |d| d > self.table_cap) {
            return Err(wasmtime::Error::new(TableLimitExceeded {
                desired,
                cap: self.table_cap,
            }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}
