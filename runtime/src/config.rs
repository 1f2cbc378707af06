//! Runtime configuration: per-rule limits with safe defaults, and engine-wide settings.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The budgets one rule runs under. Every field has a safe default ([`Limits::default`]).
///
/// In a configuration file (JSON) durations are written in milliseconds: `"deadline_ms": 50`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel for one event (about one unit per WebAssembly instruction). Reset before every event.
    pub fuel_per_event: u64,
    /// Fuel for loading: instantiation, the module's start routine and the metadata call.
    pub fuel_at_load: u64,
    /// Wall-clock bound of one call into the rule, in milliseconds (enforced with epoch interruption,
    /// so the bound is rounded up to the engine's tick).
    pub deadline_ms: u64,
    /// CPU-time bound of loading (instantiation and start routine), in milliseconds.
    pub load_deadline_ms: u64,
    /// Largest linear memory the rule may have, in bytes. A module declaring more is refused at load;
    /// growing past it at run time quarantines the rule.
    pub memory_bytes: u64,
    /// Largest number of table elements.
    pub table_elements: u64,
    /// Largest result (encoded detections) a rule may return for one event, in bytes.
    pub max_result_bytes: u32,
    /// Most detections a rule may return for one event.
    pub max_detections: u32,
    /// How many times the rule may hit its fuel or deadline budget (a merely slow event can) before it
    /// is quarantined. After each such strike the rule's instance is reset to a fresh one.
    pub budget_strikes: u32,
    /// Seconds after which a budget strike is forgotten: each full period since the rule's last
    /// strike takes one strike off its count, so a rule that is slow once in a while is never
    /// quarantined for it.
    pub strike_decay_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_event: 10_000_000,
            fuel_at_load: 100_000_000,
            deadline_ms: 100,
            load_deadline_ms: 1_000,
            memory_bytes: 16 << 20,
            table_elements: 10_000,
            max_result_bytes: 64 << 10,
            max_detections: 64,
            budget_strikes: 1,
            strike_decay_s: 3_600,
        }
    }
}

impl Limits {
    /// [`deadline_ms`](Self::deadline_ms) as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// [`load_deadline_ms`](Self::load_deadline_ms) as a duration.
    pub fn load_deadline(&self) -> Duration {
        Duration::from_millis(self.load_deadline_ms)
    }

    /// Checks that every limit is usable: non-zero where zero would make every call fail, and below
    /// upper bounds that keep a mistyped value from disabling a limit (a deadline of `u64::MAX` ms is
    /// no deadline).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |name: &'static str, v: u64, max: u64, range: &'static str| {
            if v == 0 {
                Err(ConfigError::Zero(name))
            } else if v > max {
                Err(ConfigError::OutOfRange(name, range))
            } else {
                Ok(())
            }
        };
        check(
            "fuel_per_event",
            self.fuel_per_event,
            100_000_000_000,
            "1 ..= 100000000000",
        )?;
        check(
            "fuel_at_load",
            self.fuel_at_load,
            1_000_000_000_000,
            "1 ..= 1000000000000",
        )?;
        check("deadline_ms", self.deadline_ms, 60_000, "1 ..= 60000")?;
        check(
            "load_deadline_ms",
            self.load_deadline_ms,
            600_000,
            "1 ..= 600000",
        )?;
        check("memory_bytes", self.memory_bytes, 4 << 30, "1 ..= 4 GiB")?;
        check(
            "table_elements",
            self.table_elements.max(1),
            10_000_000,
            "0 ..= 10000000",
        )?;
        check(
            "max_result_bytes",
            u64::from(self.max_result_bytes),
            16 << 20,
            "1 ..= 16 MiB",
        )?;
        check(
            "max_detections",
            u64::from(self.max_detections),
            10_000,
            "1 ..= 10000",
        )?;
        check(
            "budget_strikes",
            u64::from(self.budget_strikes),
            1_000,
            "1 ..= 1000",
        )?;
        check(
            "strike_decay_s",
            self.strike_decay_s,
            31_536_000,
            "1 ..= 31536000",
        )?;
        Ok(())
    }
}

/// Engine-wide settings and the limits of every rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Limits of every rule without an entry in [`rules`](Self::rules).
    pub limits: Limits,
    /// Limits for particular rules, by rule id.
    pub rules: BTreeMap<String, Limits>,
    /// Most guest stack a rule may use, in bytes (deeper recursion traps).
    pub max_wasm_stack: usize,
    /// Period of the epoch ticker that enforces deadlines, in milliseconds.
    pub epoch_tick_ms: u64,
    /// Largest module accepted, in bytes (checked before compiling).
    pub max_module_bytes: usize,
    /// Largest encoded event handed to rules, in bytes; larger events are refused and counted.
    pub max_event_bytes: usize,
    /// Most fields without a typed slot ([`Event::extra`](rulebox_sdk::Event::extra)) an event may
    /// carry; events with more are refused and counted. Every rule decodes every field on its own
    /// fuel, so an event stuffed with fields must not be able to exhaust the rules' budgets.
    pub max_event_fields: usize,
    /// Log messages (the `rulebox.log` import and WASI stdout/stderr lines) a rule may emit per second,
    /// on average; the excess is counted and reported, not logged.
    pub log_per_second: u32,
    /// Burst of log messages allowed above the average.
    pub log_burst: u32,
    /// Name every rule's compiled code for Linux `perf` (wasmtime's perf map, written to
    /// `/tmp/perf-<pid>.map`), so a profile shows the rules' own functions. For profiling only: off by
    /// default. Guests built by this repository keep their function names (the `name` section) for
    /// this and for quarantine backtraces.
    pub perf_map: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            limits: Limits::default(),
            rules: BTreeMap::new(),
            max_wasm_stack: 512 << 10,
            epoch_tick_ms: 2,
            max_module_bytes: 16 << 20,
            max_event_bytes: 256 << 10,
            max_event_fields: 256,
            log_per_second: 10,
            log_burst: 20,
            perf_map: false,
        }
    }
}

impl RuntimeConfig {
    /// The limits that apply to the rule `rule_id`.
    pub fn limits_for(&self, rule_id: &str) -> &Limits {
        self.rules.get(rule_id).unwrap_or(&self.limits)
    }

    /// Reads a configuration from JSON text, rejecting unknown fields and unusable values.
    pub fn from_json(text: &str) -> Result<RuntimeConfig, ConfigError> {
        let config: RuntimeConfig = serde_json::from_str(text).map_err(ConfigError::Parse)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limits.validate()?;
        for (id, limits) in &self.rules {
            limits
                .validate()
                .map_err(|e| ConfigError::Rule(id.clone(), Box::new(e)))?;
        }
        if self.max_wasm_stack < (64 << 10) || self.max_wasm_stack > (64 << 20) {
            return Err(ConfigError::OutOfRange(
                "max_wasm_stack",
                "64 KiB ..= 64 MiB",
            ));
        }
        if self.epoch_tick_ms == 0 || self.epoch_tick_ms > 1_000 {
            return Err(ConfigError::OutOfRange("epoch_tick_ms", "1 ..= 1000"));
        }
        let max_input = usize::try_from(rulebox_sdk::abi::MAX_INPUT_LEN).unwrap_or(usize::MAX);
        if self.max_event_bytes == 0 || self.max_event_bytes > max_input {
            return Err(ConfigError::OutOfRange(
                "max_event_bytes",
                "1 ..= 16 MiB (the guest input cap)",
            ));
        }
        if self.max_event_fields > 100_000 {
            return Err(ConfigError::OutOfRange("max_event_fields", "0 ..= 100000"));
        }
        if self.max_module_bytes == 0 {
            return Err(ConfigError::Zero("max_module_bytes"));
        }
        Ok(())
    }

    /// The limits used while a module loads, before its id (and so its own limits) is known: the most
    /// generous of the default and every per-rule entry. The rule's own limits apply once its
    /// metadata is read, and its memory is checked against them then.
    pub fn loading_limits(&self) -> Limits {
        let mut l = self.limits.clone();
        for r in self.rules.values() {
            l.memory_bytes = l.memory_bytes.max(r.memory_bytes);
            l.table_elements = l.table_elements.max(r.table_elements);
            l.fuel_at_load = l.fuel_at_load.max(r.fuel_at_load);
            l.load_deadline_ms = l.load_deadline_ms.max(r.load_deadline_ms);
        }
        l
    }

    /// The native stack a thread running rules must have: the guest stack plus room for the host.
    pub fn sandbox_thread_stack(&self) -> usize {
        self.max_wasm_stack
            .saturating_mul(2)
            .saturating_add(8 << 20)
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not a valid configuration.
    #[error("invalid configuration: {0}")]
    Parse(#[source] serde_json::Error),
    /// A limit is zero where zero would make every call fail.
    #[error("`{0}` must not be zero")]
    Zero(&'static str),
    /// A value is outside its allowed range.
    #[error("`{0}` must be in {1}")]
    OutOfRange(&'static str, &'static str),
    /// A per-rule limit is invalid.
    #[error("limits for rule `{0}`: {1}")]
    Rule(String, #[source] Box<ConfigError>),
    /// The WebAssembly engine refused the configuration.
    #[error("the WebAssembly engine refused the configuration: {0}")]
    Engine(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_json_round_trips() {
        let config = RuntimeConfig::default();
        config.validate().unwrap();
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(RuntimeConfig::from_json(&text).unwrap(), config);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let err = RuntimeConfig::from_json(r#"{"limits":{"fuel_per_event":0}}"#).unwrap_err();
        assert!(err.to_string().contains("fuel_per_event"), "{err}");
        let err = RuntimeConfig::from_json(r#"{"limits":{"fuel":5}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `fuel`"), "{err}");
        let err = RuntimeConfig::from_json(r#"{"rules":{"r1":{"deadline_ms":0}}}"#).unwrap_err();
        assert!(
            err.to_string().contains("r1") && err.to_string().contains("deadline_ms"),
            "{err}"
        );
        let err = RuntimeConfig::from_json(r#"{"max_wasm_stack":1}"#).unwrap_err();
        assert!(err.to_string().contains("max_wasm_stack"), "{err}");
        // A value so large it would disable the limit is refused, not saturated.
        let err = RuntimeConfig::from_json(
            r#"{"epoch_tick_ms":1,"limits":{"deadline_ms":18446744073709551615}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("deadline_ms"), "{err}");
        let err = RuntimeConfig::from_json(r#"{"max_event_bytes":1000000000}"#).unwrap_err();
        assert!(err.to_string().contains("max_event_bytes"), "{err}");
    }

    #[test]
    fn per_rule_limits_override_defaults() {
        let config =
            RuntimeConfig::from_json(r#"{"rules":{"slow":{"fuel_per_event":99}}}"#).unwrap();
        assert_eq!(config.limits_for("slow").fuel_per_event, 99);
        assert_eq!(
            config.limits_for("other").fuel_per_event,
            Limits::default().fuel_per_event
        );
    }
}
