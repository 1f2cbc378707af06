//! Event kinds and sets of them (what a rule subscribes to).

use serde::{Deserialize, Serialize};

macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $bit:literal, $name:literal; )*) => {
        /// The kind of an [`Event`](crate::Event): which body it carries.
        ///
        /// The numbers are part of the ABI (they are bit positions in [`EventKinds`]) and never change.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum EventKind {
            $( $(#[$doc])* $variant = $bit, )*
        }

        impl EventKind {
            /// Every kind, in ABI order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The stable snake_case name used in rule metadata, JSON and the CLI.
            pub const fn name(self) -> &'static str {
                match self { $(EventKind::$variant => $name,)* }
            }

            /// Looks a kind up by its [`name`](Self::name).
            pub fn from_name(name: &str) -> Option<EventKind> {
                match name { $($name => Some(EventKind::$variant),)* _ => None }
            }

            /// Looks a kind up by its ABI number.
            pub const fn from_bit(bit: u8) -> Option<EventKind> {
                match bit { $($bit => Some(EventKind::$variant),)* _ => None }
            }
        }
    };
}

event_kinds! {
    /// A process started (Sysmon 1).
    ProcessStart = 0, "process_start";
    /// A process opened another process (Sysmon 10).
    ProcessAccess = 1, "process_access";
    /// A file was created or overwritten (Sysmon 11).
    FileCreate = 2, "file_create";
    /// A file was written to.
    FileWrite = 3, "file_write";
    /// A file was renamed.
    FileRename = 4, "file_rename";
    /// A file was deleted (Sysmon 23 and 26).
    FileDelete = 5, "file_delete";
    /// A registry key was created (Sysmon 12, CreateKey).
    RegistryAdd = 6, "registry_add";
    /// A registry value was set (Sysmon 13).
    RegistrySet = 7, "registry_set";
    /// A registry key or value was deleted (Sysmon 12, DeleteKey / DeleteValue).
    RegistryDelete = 8, "registry_delete";
    /// A registry key or value was renamed (Sysmon 14).
    RegistryRename = 9, "registry_rename";
    /// An outbound or inbound network connection (Sysmon 3).
    NetworkConnect = 10, "network_connect";
    /// A DNS query (Sysmon 22).
    DnsQuery = 11, "dns_query";
    /// A named pipe was created (Sysmon 17).
    PipeCreate = 12, "pipe_create";
    /// A named pipe was connected to (Sysmon 18).
    PipeConnect = 13, "pipe_connect";
    /// An image (DLL or executable) was loaded into a process (Sysmon 7).
    ImageLoad = 14, "image_load";
    /// Any other Windows event; its fields are in [`Event::extra`](crate::Event::extra).
    Other = 15, "other";
}

impl core::fmt::Display for EventKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`EventKind`]s, as a bit mask (bit `n` is the kind whose ABI number is `n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct EventKinds(pub u32);

impl EventKinds {
    /// No kinds.
    pub const NONE: EventKinds = EventKinds(0);

    /// The set holding exactly `kinds`.
    pub const fn of(kinds: &[EventKind]) -> EventKinds {
        let mut bits = 0u32;
        let mut i = 0;
        while i < kinds.len() {
            bits |= 1 << (kinds[i] as u8);
            i += 1;
        }
        EventKinds(bits)
    }

    /// Every kind.
    pub const fn all() -> EventKinds {
        EventKinds::of(EventKind::ALL)
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: EventKind) -> bool {
        self.0 & (1 << (kind as u8)) != 0
    }

    /// Bits that name no known kind (a module built against a newer schema may set them).
    pub const fn unknown_bits(self) -> u32 {
        self.0 & !EventKinds::all().0
    }

    /// The kinds in the set, in ABI order.
    pub fn iter(self) -> impl Iterator<Item = EventKind> {
        EventKind::ALL
            .iter()
            .copied()
            .filter(move |k| self.contains(*k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bits_are_distinct() {
        let mut seen = 0u32;
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.name()), Some(*kind));
            assert_eq!(EventKind::from_bit(*kind as u8), Some(*kind));
            let bit = 1u32 << (*kind as u8);
            assert_eq!(seen & bit, 0, "{kind} shares a bit");
            seen |= bit;
        }
        assert_eq!(EventKinds::all().0, seen);
    }

    #[test]
    fn set_membership() {
        let set = EventKinds::of(&[EventKind::ProcessStart, EventKind::DnsQuery]);
        assert!(set.contains(EventKind::ProcessStart));
        assert!(set.contains(EventKind::DnsQuery));
        assert!(!set.contains(EventKind::FileCreate));
        assert_eq!(set.iter().count(), 2);
        assert_eq!(EventKinds(1 << 31).unknown_bits(), 1 << 31);
    }
}
