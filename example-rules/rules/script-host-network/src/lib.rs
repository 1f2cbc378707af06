//! A script host making an outbound connection to an unusual port: droppers written in VBScript,
//! JScript, HTA or PowerShell that talk to their command-and-control server directly.
//!
//! # How it matches
//!
//! A `NetworkConnect` event (Sysmon 3) where
//!
//! * `Image` ends with `\wscript.exe`, `\cscript.exe`, `\mshta.exe`, `\powershell.exe` or `\pwsh.exe`;
//! * the connection was initiated by this host (`Initiated` is true);
//! * `DestinationPort` is neither 80 nor 443 (web traffic is normal for these hosts: updates, module
//!   downloads, proxies). Port 0 means the source did not report a port that parsed, and is skipped;
//! * the destination is not loopback (`127.0.0.0/8`, `::1`, `localhost`): local WinRM and debugging
//!   traffic is not command and control.
#![cfg_attr(target_arch = "wasm32", no_std)]

use rulebox_sdk::prelude::*;

const SCRIPT_HOSTS: &[&str] = &[
    "\\wscript.exe",
    "\\cscript.exe",
    "\\mshta.exe",
    "\\powershell.exe",
    "\\pwsh.exe",
];
const WEB_PORTS: &[u16] = &[80, 443];

/// Fires when a script host connects out to a port other than 80/443.
#[derive(Default)]
pub struct ScriptHostNetwork;

impl Rule for ScriptHostNetwork {
    const META: RuleMeta = RuleMeta {
        id: "script-host-outbound-connection",
        name: "Script host connects out on an unusual port",
        version: "1.0.0",
        severity: Severity::Medium,
        events: &[EventKind::NetworkConnect],
    };

    fn on_event(&mut self, event: &EventView<'_>, out: &mut Detections) {
        let Some(n) = event.network() else {
            return;
        };
        if !n.initiated()
            || n.destination_port() == 0
            || WEB_PORTS.contains(&n.destination_port())
            || is_loopback(n.destination_ip())
            || eq_ignore_case(n.destination_hostname(), "localhost")
            || !SCRIPT_HOSTS
                .iter()
                .any(|h| ends_with_ignore_case(n.image(), h))
        {
            return;
        }
        let mut port = [0u8; 5];
        let d = out
            .detect("Script host connected out on an unusual port")
            .field("Image", n.image())
            .field("DestinationIp", n.destination_ip())
            .field("DestinationPort", decimal(n.destination_port(), &mut port))
            .field("Protocol", n.protocol());
        if !n.destination_hostname().is_empty() {
            d.field("DestinationHostname", n.destination_hostname());
        }
    }
}

fn is_loopback(ip: &str) -> bool {
    ip.starts_with("127.") || ip == "::1" || eq_ignore_case(ip, "0:0:0:0:0:0:0:1")
}

/// Writes `n` in decimal into `buf`, without `alloc::format!`.
fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    core::str::from_utf8(&buf[i..]).unwrap_or("")
}

#[cfg(feature = "module")]
rulebox_sdk::export_rule!(ScriptHostNetwork);

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(image: &str, ip: &str, port: u16, initiated: bool) -> Event<'static> {
        let mut n = NetworkConnect::default();
        n.image = image.to_owned().into();
        n.destination_ip = ip.to_owned().into();
        n.destination_port = port;
        n.initiated = initiated;
        n.protocol = "tcp".into();
        Event::new(EventData::NetworkConnect(n))
    }

    const WSCRIPT: &str = "C:\\Windows\\System32\\wscript.exe";

    #[test]
    fn script_host_to_odd_port_fires() {
        for image in [
            WSCRIPT,
            "C:\\Windows\\SysWOW64\\CScript.EXE",
            "C:\\Windows\\System32\\mshta.exe",
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "C:\\Program Files\\PowerShell\\7\\pwsh.exe",
        ] {
            for port in [4444, 8080, 1, 65535] {
                let found = run_native(
                    &mut ScriptHostNetwork,
                    &conn(image, "203.0.113.7", port, true),
                );
                assert_eq!(found.len(), 1, "{image}:{port}");
                let d = &found[0];
                assert_eq!(d.rule_id, "script-host-outbound-connection");
                let port_field = d.fields.iter().find(|f| f.name == "DestinationPort");
                assert_eq!(port_field.unwrap().value, port.to_string());
                assert!(
                    d.fields
                        .iter()
                        .any(|f| f.name == "DestinationIp" && f.value == "203.0.113.7")
                );
            }
        }
    }

    #[test]
    fn web_ports_inbound_loopback_and_other_images_are_quiet() {
        let quiet = |ev: Event<'static>| run_native(&mut ScriptHostNetwork, &ev).is_empty();
        assert!(quiet(conn(WSCRIPT, "203.0.113.7", 443, true)));
        assert!(quiet(conn(WSCRIPT, "203.0.113.7", 80, true)));
        assert!(quiet(conn(WSCRIPT, "203.0.113.7", 4444, false)));
        assert!(quiet(conn(WSCRIPT, "203.0.113.7", 0, true)));
        assert!(quiet(conn(WSCRIPT, "127.0.0.1", 5985, true)));
        assert!(quiet(conn(WSCRIPT, "::1", 5985, true)));
        assert!(quiet(conn(
            "C:\\Program Files\\Mozilla Firefox\\firefox.exe",
            "203.0.113.7",
            4444,
            true
        )));
    }
}
