//! A field at the event cap made of near misses of a rule's patterns (each pattern's text less its
//! last character, as anyone who can start a process can write into its command line) costs the
//! rule, in the sandbox with the default limits, at most half its fuel: the start filter and the
//! skips out of looping states stop at every few bytes of such text, and the scan then steps
//! through its tables instead, at a small cost per byte whatever the text. The detections are the
//! native evaluator's, and a real match after the near misses still fires.

use rulebox_example_artifacts::SIGMA_EVAL;
use rulebox_runtime::{RuleSet, RuleState, Runtime, RuntimeConfig};
use rulebox_sdk::{Detections, Event, EventData, EventView, ProcessStart};
use rulebox_sigma::{Evaluator, Program};

/// The validator's default headroom: a rule may use half its budget.
const HEADROOM: f64 = 0.5;

/// The event's encoding around its command line stays within this many bytes.
const SLACK: usize = 4096;

/// Many literals on one field, as in SigmaHQ's malicious-cmdlets rule: starts the filter lets
/// through everywhere in PowerShell text.
const MANY_LITERALS: &[&str] = &[
    "Add-Exfiltration",
    "Add-Persistence",
    "Add-RegBackdoor",
    "Check-VM",
    "Decrypt-Hash",
    "Disable-MachineAccount",
    "Enable-MachineAccount",
    "Export-ADRCSV",
    "Find-Fruit",
    "Get-ChromeDump",
    "Get-ClipboardContents",
    "Get-FoxDump",
    "Get-GPPPassword",
    "Get-IndexedItem",
    "Get-Keystrokes",
    "Get-LSASecret",
    "Get-PassHashes",
    "Get-RegAutoLogon",
    "Get-RemoteBootKey",
    "Get-Screenshot",
    "Get-System",
    "Get-VaultCredential",
    "Invoke-ACLScanner",
    "Invoke-AllChecks",
    "Invoke-BypassUAC",
    "Invoke-DCSync",
    "Invoke-Kerberoast",
    "Invoke-Mimikatz",
    "Invoke-PowerShellTcp",
    "Invoke-Shellcode",
    "Invoke-TokenManipulation",
    "Invoke-WmiCommand",
    "New-HoneyHash",
    "Out-Minidump",
    "Remove-Update",
    "Set-MacAttribute",
    "Start-CaptureServer",
];

/// A gate and a field automaton on one field, as in SigmaHQ's obfuscated-IP-download rule: the
/// literal gate and the regular expressions both read the command line.
const GATED: &str = r#"
title: Obfuscated IP download
id: 00000000-0000-4000-8000-00000000a001
logsource: { category: process_creation, product: windows }
detection:
    selection_command:
        CommandLine|contains: ['Invoke-WebRequest', 'iwr ', 'Invoke-RestMethod', 'irm ', 'wget ', 'curl ', 'DownloadFile', 'DownloadString']
    selection_ip_1:
        CommandLine|contains: [' 0x', '//0x', '.0x', '.00x']
    selection_ip_3:
        - CommandLine|re: 'https?://[0-9]{1,3}\.[0-9]{1,3}\.0[0-9]{3,4}'
        - CommandLine|re: 'https?://0[0-9]{3,11}'
        - CommandLine|re: ' [0-7]{7,13}'
    filter_main_valid_ip:
        CommandLine|re: 'https?://(?:(?:25[0-5]|(?:2[0-4]|1\d|[1-9])?\d)(?:\.|\b)){4}'
    condition: selection_command and 1 of selection_ip_* and not 1 of filter_main_*
level: medium
"#;

/// A state that loops on every byte but one (`[^\\]+`): its skip stops at every backslash.
const LOOPING: &str = r#"
title: A script under a user folder
id: 00000000-0000-4000-8000-00000000a002
logsource: { category: process_creation, product: windows }
detection:
    selection:
        CommandLine|re: '\\Users\\[^\\]+\\AppData\\[^\\]+\\[^\\]+\.ps1'
    condition: selection
level: medium
"#;

fn many_literals_rule() -> String {
    let list: Vec<String> = MANY_LITERALS.iter().map(|l| format!("'{l}'")).collect();
    format!(
        "title: Malicious cmdlets\nid: 00000000-0000-4000-8000-00000000a003\n\
         logsource: {{ category: process_creation, product: windows }}\n\
         detection:\n    selection:\n        CommandLine|contains: [{}]\n    condition: selection\n\
         level: high\n",
        list.join(", ")
    )
}

/// `unit` repeated to `len` bytes (cut at a character boundary), then `tail`.
fn filled(unit: &str, len: usize, tail: &str) -> String {
    let mut s = String::with_capacity(len);
    while s.len() + unit.len() + tail.len() <= len {
        s.push_str(unit);
    }
    s.push_str(tail);
    s
}

/// Near misses of `texts`: each with its last character changed (to `#`), then a space.
fn near_misses(texts: &[&str]) -> String {
    texts
        .iter()
        .map(|t| {
            let mut t = t.to_string();
            t.pop();
            t + "# "
        })
        .collect()
}

fn process_start(command_line: String) -> Event<'static> {
    let mut p = ProcessStart::default();
    p.image = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe".into();
    p.command_line = command_line.into();
    Event::new(EventData::ProcessStart(p))
}

/// Runs `yaml`'s rule over each command line (labelled) natively and sandboxed; returns, per
/// event, whether it fired, and checks the sandbox's answers, quarantines and fuel.
fn run(yaml: &str, lines: &[(&str, String)]) -> Vec<bool> {
    let program: Program<'static> = rulebox_sigma::compile(yaml).expect("the rule compiles");
    let config = RuntimeConfig::default();
    let cap = config.max_event_bytes;
    let budget = config.limits.fuel_per_event;
    let events: Vec<(String, Event<'static>)> = lines
        .iter()
        .map(|(label, line)| {
            let e = process_start(line.clone());
            let size = e.to_bytes().expect("the event encodes").len();
            assert!(
                size <= cap && size + 2 * SLACK >= cap,
                "`{label}`: {size} bytes, not at the {cap}-byte cap"
            );
            (label.to_string(), e)
        })
        .collect();
    let mut eval = Evaluator::new(program.clone()).expect("the program decodes");
    let native: Vec<bool> = events
        .iter()
        .map(|(_, e)| {
            let bytes = e.to_bytes().expect("the event encodes");
            let view = EventView::new(&bytes).expect("the event reads");
            eval.detect(
                &view,
                &mut Detections::new("native", rulebox_sdk::Severity::Low),
            )
        })
        .collect();
    let module = rulebox_sigma::build_module(&program, SIGMA_EVAL.bytes).expect("it embeds");
    let runtime = Runtime::new(config).expect("runtime");
    let rt = runtime.clone();
    let name = program.id.clone();
    let sandboxed: Vec<(String, bool, u64)> = runtime.run_sandboxed(move |thread| {
        let mut set = RuleSet::new(&rt);
        set.load(thread, &module, &name).expect("the module loads");
        let mut out = Vec::new();
        for (label, event) in &events {
            let outcome = set.process(thread, event).expect("the event is taken");
            let (_, state, stats) = set.rules().next().expect("one rule");
            let quarantined = matches!(state, RuleState::Quarantined(_));
            out.push((
                label.clone(),
                !outcome.detections.is_empty(),
                if quarantined {
                    u64::MAX
                } else {
                    stats.last_fuel
                },
            ));
            if quarantined {
                // A fresh instance for the next event.
                set = RuleSet::new(&rt);
                set.load(thread, &module, &name).expect("the module loads");
            }
        }
        out
    });
    for (label, _, fuel) in &sandboxed {
        match *fuel {
            u64::MAX => eprintln!("quarantined (out of fuel?) on `{label}`"),
            f => eprintln!(
                "{f:>9} fuel ({:.1}%) on `{label}`",
                100.0 * f as f64 / budget as f64
            ),
        }
    }
    for ((label, fired, fuel), native) in sandboxed.iter().zip(&native) {
        assert!(*fuel != u64::MAX, "quarantined on `{label}`");
        assert_eq!(fired, native, "sandboxed and native differ on `{label}`");
        assert!(
            *fuel as f64 <= HEADROOM * budget as f64,
            "`{label}`: {fuel} of {budget} fuel"
        );
    }
    native
}

fn line_len() -> usize {
    RuntimeConfig::default().max_event_bytes - SLACK
}

#[test]
fn near_misses_of_many_literals_at_the_cap_cost_at_most_half_the_fuel() {
    let unit = near_misses(MANY_LITERALS);
    let len = line_len();
    let fired = run(
        &many_literals_rule(),
        &[
            ("near misses", filled(&unit, len, "")),
            (
                "near misses, then a match",
                filled(&unit, len, "Invoke-Mimikatz"),
            ),
        ],
    );
    assert_eq!(fired, [false, true]);
}

#[test]
fn near_misses_of_a_gated_rule_at_the_cap_cost_at_most_half_the_fuel() {
    // What the gate needs, nearly; what the regular expressions start with, nearly.
    let unit = near_misses(&[
        "Invoke-WebRequest",
        "iwr ",
        "DownloadString",
        "curl ",
        "http://0",
        "https://1.2.0",
        " 0x",
        " 012345",
    ]);
    let len = line_len();
    let fired = run(
        GATED,
        &[
            ("near misses", filled(&unit, len, "")),
            (
                "near misses, then a match",
                filled(&unit, len, "iwr http://0x7f.0.0.1/a"),
            ),
        ],
    );
    assert_eq!(fired, [false, true]);
}

#[test]
fn near_misses_of_a_looping_state_at_the_cap_cost_at_most_half_the_fuel() {
    let len = line_len();
    let fired = run(
        LOOPING,
        &[
            ("backslashes", filled("\\a", len, "")),
            (
                "user folders",
                filled("C:\\Users\\x\\AppData\\y\\a.ps ", len, ""),
            ),
            (
                "user folders, then a match",
                filled(
                    "C:\\Users\\x\\AppData\\y\\a.ps ",
                    len,
                    "C:\\Users\\x\\AppData\\y\\a.ps1",
                ),
            ),
        ],
    );
    assert_eq!(fired, [false, false, true]);
}
