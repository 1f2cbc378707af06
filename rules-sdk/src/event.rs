//! The event schema shared by the host and every rule.
//!
//! The host builds an [`Event`] from a reader, encodes it once in the wire format of [`crate::wire`]
//! and hands the same bytes to each subscribed rule; the rule reads them in place through an
//! [`EventView`] and the body views ([`ProcessStartView`], ...), which decode a field only when it is
//! asked for (no copy, no allocation, no work for the fields a rule ignores). Both sides take the
//! field lists from the one `event_body!` declaration of each body below.
//!
//! Field names follow Sysmon (`Image`, `CommandLine`, `TargetFilename`, ...): they are the serde names
//! in JSON and the names [`Event::field`] understands. Text fields that an event did not report are
//! empty strings. Numbers and flags that a source reported in a form that does not parse are kept,
//! as text, in [`Event::extra`] under their own name, so nothing the source said is lost.
//!
//! Changing any body here (adding, removing or reordering a field) or the kinds changes the wire
//! format: bump [`SCHEMA_VERSION`](crate::abi::SCHEMA_VERSION) and [`WIRE_VERSION`](crate::wire::WIRE_VERSION) when you do.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::kind::EventKind;
use crate::wire::{BodyLayout, EventView, WireError, Writer, slot_of};

/// A value of one event field, as [`Event::field`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'e> {
    /// Text (may be empty when the source did not report the field).
    Str(&'e str),
    /// An unsigned number (process ids, ports).
    Int(u64),
    /// A flag (`Signed`, `Initiated`).
    Bool(bool),
}

impl<'e> Value<'e> {
    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&'e str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl core::fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{}", if *b { "true" } else { "false" }),
        }
    }
}

/// One named field without a typed slot in the schema (kept so that nothing a source reported is lost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field<'a> {
    /// The field's name as the source spelled it.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// The field's value as text.
    #[serde(borrow)]
    pub value: Cow<'a, str>,
}

/// Declares one event body: its fields with their Sysmon names, and by-name access.
macro_rules! event_body {
    (
        $(#[$meta:meta])*
        $name:ident / $view:ident {
            text { $( $(#[$tdoc:meta])* $tfield:ident => $tname:literal, )* }
            $( int { $( $(#[$idoc:meta])* $ifield:ident : $ity:ty => $iname:literal, )* } )?
            $( flag { $( $(#[$bdoc:meta])* $bfield:ident => $bname:literal, )* } )?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[non_exhaustive]
        pub struct $name<'a> {
            $( $(#[$tdoc])* #[serde(rename = $tname, default, borrow)] pub $tfield: Cow<'a, str>, )*
            $($( $(#[$idoc])* #[serde(rename = $iname, default)] pub $ifield: $ity, )*)?
            $($( $(#[$bdoc])* #[serde(rename = $bname, default)] pub $bfield: bool, )*)?
        }

        impl<'a> $name<'a> {
            /// The Sysmon names of this body's fields, in declaration order.
            pub const FIELDS: &'static [&'static str] = &[
                $($tname,)* $($($iname,)*)? $($($bname,)*)?
            ];

            /// The value of the field named `name` (a Sysmon name such as `"Image"`).
            pub fn field(&self, name: &str) -> Option<Value<'_>> {
                match name {
                    $( $tname => Some(Value::Str(&self.$tfield)), )*
                    $($( $iname => Some(Value::Int(u64::from(self.$ifield))), )*)?
                    $($( $bname => Some(Value::Bool(self.$bfield)), )*)?
                    _ => None,
                }
            }

            /// Calls `f` with every field's name and value, in declaration order.
            pub fn for_each_field(&self, f: &mut dyn FnMut(&'static str, Value<'_>)) {
                $( f($tname, Value::Str(&self.$tfield)); )*
                $($( f($iname, Value::Int(u64::from(self.$ifield))); )*)?
                $($( f($bname, Value::Bool(self.$bfield)); )*)?
            }

            /// Sets the field named `name` from text. Returns `false` when the body has no field of that
            /// name, or when the field is a number or flag and `value` does not parse as one.
            pub fn set_field(&mut self, name: &str, value: Cow<'a, str>) -> bool {
                match name {
                    $( $tname => { self.$tfield = value; true } )*
                    $($( $iname => match parse_uint::<$ity>(&value) {
                        Some(v) => { self.$ifield = v; true }
                        None => false,
                    }, )*)?
                    $($( $bname => match parse_flag(&value) {
                        Some(v) => { self.$bfield = v; true }
                        None => false,
                    }, )*)?
                    _ => false,
                }
            }

            /// Turns every borrowed string into an owned one.
            pub fn into_owned(self) -> $name<'static> {
                $name {
                    $( $tfield: Cow::Owned(self.$tfield.into_owned()), )*
                    $($( $ifield: self.$ifield, )*)?
                    $($( $bfield: self.$bfield, )*)?
                }
            }

            /// The wire layout of this body.
            pub const LAYOUT: BodyLayout = BodyLayout {
                fields: Self::FIELDS,
                texts: <[&str]>::len(&[$($tname),*]),
                ints: <[&str]>::len(&[$($($iname),*)?]),
            };

            fn write_slots(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
                $( w.text(&self.$tfield)?; )*
                $($( w.int(u32::from(self.$ifield)); )*)?
                $($( w.int(u32::from(self.$bfield)); )*)?
                Ok(())
            }

            fn read_slots(&mut self, v: &EventView<'a>) {
                $( self.$tfield = Cow::Borrowed(v.text_at(slot_of(Self::FIELDS, $tname))); )*
                $($( self.$ifield = <$ity>::try_from(v.int_at(slot_of(Self::FIELDS, $iname))).unwrap_or_default(); )*)?
                $($( self.$bfield = v.int_at(slot_of(Self::FIELDS, $bname)) != 0; )*)?
            }
        }

        #[doc = concat!("A [`", stringify!($name), "`] body read in place from an encoded event: each accessor reads one slot (see [`EventView`]).")]
        #[derive(Debug, Clone, Copy)]
        pub struct $view<'v, 'e>(&'v EventView<'e>);

        impl<'v, 'e> $view<'v, 'e> {
            /// The whole event (header fields, extra fields, by-name access).
            #[inline]
            pub fn event(&self) -> &'v EventView<'e> {
                self.0
            }

            $(
                $(#[$tdoc])*
                #[inline]
                pub fn $tfield(&self) -> &'e str {
                    self.0.text_at(const { slot_of($name::FIELDS, $tname) })
                }
            )*
            $($(
                $(#[$idoc])*
                #[inline]
                pub fn $ifield(&self) -> $ity {
                    <$ity>::try_from(self.0.int_at(const { slot_of($name::FIELDS, $iname) }))
                        .unwrap_or_default()
                }
            )*)?
            $($(
                $(#[$bdoc])*
                #[inline]
                pub fn $bfield(&self) -> bool {
                    self.0.int_at(const { slot_of($name::FIELDS, $bname) }) != 0
                }
            )*)?
        }
    };
}

/// Parses a decimal or `0x` hexadecimal unsigned number, as Windows logs print them.
fn parse_uint<T: TryFrom<u64>>(text: &str) -> Option<T> {
    let text = text.trim();
    let n = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()?
    } else {
        text.parse::<u64>().ok()?
    };
    T::try_from(n).ok()
}

/// Parses a flag as Sysmon prints it (`true`/`false`, any case; `1`/`0`).
fn parse_flag(text: &str) -> Option<bool> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("true") || text == "1" {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") || text == "0" {
        Some(false)
    } else {
        None
    }
}

event_body! {
    /// A process started (Sysmon event 1). The new process's id is [`Event::pid`].
    ProcessStart / ProcessStartView {
        text {
            /// Full path of the new process's executable.
            image => "Image",
            /// The command line, as the process received it.
            command_line => "CommandLine",
            /// Working directory.
            current_directory => "CurrentDirectory",
            /// Account the process runs as (`DOMAIN\user`).
            user => "User",
            /// `Low`, `Medium`, `High` or `System`.
            integrity_level => "IntegrityLevel",
            /// Hashes of the image (`SHA256=...,IMPHASH=...`).
            hashes => "Hashes",
            /// Executable of the parent process.
            parent_image => "ParentImage",
            /// Command line of the parent process.
            parent_command_line => "ParentCommandLine",
            /// Account of the parent process.
            parent_user => "ParentUser",
            /// Original file name from the PE version resource.
            original_file_name => "OriginalFileName",
            /// Product name from the PE version resource.
            product => "Product",
            /// Company from the PE version resource.
            company => "Company",
            /// Description from the PE version resource.
            description => "Description",
            /// File version from the PE version resource.
            file_version => "FileVersion",
            /// Logon session id.
            logon_id => "LogonId",
            /// Sysmon's process GUID.
            process_guid => "ProcessGuid",
            /// Sysmon's GUID of the parent process.
            parent_process_guid => "ParentProcessGuid",
        }
        int {
            /// Id of the parent process.
            parent_pid: u32 => "ParentProcessId",
        }
    }
}

event_body! {
    /// A process opened a handle to another process (Sysmon event 10). [`Event::pid`] is the source.
    ProcessAccess / ProcessAccessView {
        text {
            /// Executable of the process that opened the handle.
            source_image => "SourceImage",
            /// Executable of the process that was opened.
            target_image => "TargetImage",
            /// The access mask granted, as Sysmon prints it (`0x1010`); see [`ProcessAccess::granted_access_mask`].
            granted_access => "GrantedAccess",
            /// Call stack of the opening thread.
            call_trace => "CallTrace",
            /// Account of the source process.
            source_user => "SourceUser",
            /// Account of the target process.
            target_user => "TargetUser",
            /// Sysmon's GUID of the source process.
            source_process_guid => "SourceProcessGUID",
            /// Sysmon's GUID of the target process.
            target_process_guid => "TargetProcessGUID",
        }
        int {
            /// Id of the target process.
            target_pid: u32 => "TargetProcessId",
        }
    }
}

impl ProcessAccess<'_> {
    /// The granted access mask as a number, if it parses.
    pub fn granted_access_mask(&self) -> Option<u32> {
        parse_uint(&self.granted_access)
    }
}

impl ProcessAccessView<'_, '_> {
    /// The granted access mask as a number, if it parses.
    pub fn granted_access_mask(&self) -> Option<u32> {
        parse_uint(self.granted_access())
    }
}

event_body! {
    /// A file was created, written or deleted (Sysmon events 11, 23, 26).
    FileEvent / FileEventView {
        text {
            /// Executable of the process that touched the file.
            image => "Image",
            /// The file.
            target_filename => "TargetFilename",
            /// Account of the process.
            user => "User",
            /// Hashes of the file, where reported (deletes).
            hashes => "Hashes",
            /// When the file was created, as the source printed it.
            creation_utc_time => "CreationUtcTime",
        }
    }
}

event_body! {
    /// A file was renamed.
    FileRename / FileRenameView {
        text {
            /// Executable of the process that renamed the file.
            image => "Image",
            /// The old name.
            source_filename => "SourceFilename",
            /// The new name.
            target_filename => "TargetFilename",
            /// Account of the process.
            user => "User",
        }
    }
}

event_body! {
    /// A registry key or value was created, set, deleted or renamed (Sysmon events 12, 13, 14).
    RegistryEvent / RegistryEventView {
        text {
            /// Sysmon's event type (`CreateKey`, `SetValue`, `DeleteValue`, `RenameKey`, ...).
            event_type => "EventType",
            /// Executable of the process that changed the registry.
            image => "Image",
            /// The key or value (`HKLM\SOFTWARE\...`).
            target_object => "TargetObject",
            /// The data written, for set events (`DWORD (0x00000001)`, a string, ...).
            details => "Details",
            /// The new name, for rename events.
            new_name => "NewName",
            /// Account of the process.
            user => "User",
        }
    }
}

event_body! {
    /// A network connection (Sysmon event 3).
    NetworkConnect / NetworkConnectView {
        text {
            /// Executable of the process.
            image => "Image",
            /// Account of the process.
            user => "User",
            /// `tcp` or `udp`.
            protocol => "Protocol",
            /// Source address.
            source_ip => "SourceIp",
            /// Source host name, if resolved.
            source_hostname => "SourceHostname",
            /// Destination address.
            destination_ip => "DestinationIp",
            /// Destination host name, if resolved.
            destination_hostname => "DestinationHostname",
            /// Service name of the destination port, if known.
            destination_port_name => "DestinationPortName",
        }
        int {
            /// Source port.
            source_port: u16 => "SourcePort",
            /// Destination port.
            destination_port: u16 => "DestinationPort",
        }
        flag {
            /// Whether this host initiated the connection.
            initiated => "Initiated",
        }
    }
}

event_body! {
    /// A DNS query (Sysmon event 22).
    DnsQuery / DnsQueryView {
        text {
            /// Executable of the process that asked.
            image => "Image",
            /// The name queried.
            query_name => "QueryName",
            /// The status code, as text.
            query_status => "QueryStatus",
            /// The answers, `;`-separated.
            query_results => "QueryResults",
            /// Account of the process.
            user => "User",
        }
    }
}

event_body! {
    /// A named pipe was created or connected to (Sysmon events 17, 18).
    PipeEvent / PipeEventView {
        text {
            /// Executable of the process.
            image => "Image",
            /// The pipe's name (`\PSEXESVC`).
            pipe_name => "PipeName",
            /// Account of the process.
            user => "User",
            /// Sysmon's event type (`CreatePipe`, `ConnectPipe`).
            event_type => "EventType",
        }
    }
}

event_body! {
    /// An image was loaded into a process (Sysmon event 7).
    ImageLoad / ImageLoadView {
        text {
            /// Executable of the loading process.
            image => "Image",
            /// The module loaded.
            image_loaded => "ImageLoaded",
            /// Hashes of the module.
            hashes => "Hashes",
            /// Signer.
            signature => "Signature",
            /// `Valid`, `Expired`, ...
            signature_status => "SignatureStatus",
            /// Original file name from the PE version resource.
            original_file_name => "OriginalFileName",
            /// Product name from the PE version resource.
            product => "Product",
            /// Company from the PE version resource.
            company => "Company",
            /// Description from the PE version resource.
            description => "Description",
            /// File version from the PE version resource.
            file_version => "FileVersion",
            /// Account of the process.
            user => "User",
        }
        flag {
            /// Whether the module is signed.
            signed => "Signed",
        }
    }
}

event_body! {
    /// Any other Windows event: what produced it. Its fields are in [`Event::extra`].
    OtherEvent / OtherEventView {
        text {
            /// The provider (`Microsoft-Windows-Security-Auditing`).
            provider => "Provider",
            /// The channel (`Security`).
            channel => "Channel",
        }
        int {
            /// The provider's event id.
            event_id: u32 => "EventID",
        }
    }
}

/// The kind-specific part of an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventData<'a> {
    /// See [`EventKind::ProcessStart`].
    #[serde(borrow)]
    ProcessStart(ProcessStart<'a>),
    /// See [`EventKind::ProcessAccess`].
    #[serde(borrow)]
    ProcessAccess(ProcessAccess<'a>),
    /// See [`EventKind::FileCreate`].
    #[serde(borrow)]
    FileCreate(FileEvent<'a>),
    /// See [`EventKind::FileWrite`].
    #[serde(borrow)]
    FileWrite(FileEvent<'a>),
    /// See [`EventKind::FileRename`].
    #[serde(borrow)]
    FileRename(FileRename<'a>),
    /// See [`EventKind::FileDelete`].
    #[serde(borrow)]
    FileDelete(FileEvent<'a>),
    /// See [`EventKind::RegistryAdd`].
    #[serde(borrow)]
    RegistryAdd(RegistryEvent<'a>),
    /// See [`EventKind::RegistrySet`].
    #[serde(borrow)]
    RegistrySet(RegistryEvent<'a>),
    /// See [`EventKind::RegistryDelete`].
    #[serde(borrow)]
    RegistryDelete(RegistryEvent<'a>),
    /// See [`EventKind::RegistryRename`].
    #[serde(borrow)]
    RegistryRename(RegistryEvent<'a>),
    /// See [`EventKind::NetworkConnect`].
    #[serde(borrow)]
    NetworkConnect(NetworkConnect<'a>),
    /// See [`EventKind::DnsQuery`].
    #[serde(borrow)]
    DnsQuery(DnsQuery<'a>),
    /// See [`EventKind::PipeCreate`].
    #[serde(borrow)]
    PipeCreate(PipeEvent<'a>),
    /// See [`EventKind::PipeConnect`].
    #[serde(borrow)]
    PipeConnect(PipeEvent<'a>),
    /// See [`EventKind::ImageLoad`].
    #[serde(borrow)]
    ImageLoad(ImageLoad<'a>),
    /// See [`EventKind::Other`].
    #[serde(borrow)]
    Other(OtherEvent<'a>),
}

/// Applies `$body` to the body of every variant of an [`EventData`].
macro_rules! with_body {
    ($data:expr, $b:ident => $body:expr) => {
        match $data {
            EventData::ProcessStart($b) => $body,
            EventData::ProcessAccess($b) => $body,
            EventData::FileCreate($b) | EventData::FileWrite($b) | EventData::FileDelete($b) => {
                $body
            }
            EventData::FileRename($b) => $body,
            EventData::RegistryAdd($b)
            | EventData::RegistrySet($b)
            | EventData::RegistryDelete($b)
            | EventData::RegistryRename($b) => $body,
            EventData::NetworkConnect($b) => $body,
            EventData::DnsQuery($b) => $body,
            EventData::PipeCreate($b) | EventData::PipeConnect($b) => $body,
            EventData::ImageLoad($b) => $body,
            EventData::Other($b) => $body,
        }
    };
}

impl<'a> EventData<'a> {
    /// The kind of this body.
    pub fn kind(&self) -> EventKind {
        match self {
            EventData::ProcessStart(_) => EventKind::ProcessStart,
            EventData::ProcessAccess(_) => EventKind::ProcessAccess,
            EventData::FileCreate(_) => EventKind::FileCreate,
            EventData::FileWrite(_) => EventKind::FileWrite,
            EventData::FileRename(_) => EventKind::FileRename,
            EventData::FileDelete(_) => EventKind::FileDelete,
            EventData::RegistryAdd(_) => EventKind::RegistryAdd,
            EventData::RegistrySet(_) => EventKind::RegistrySet,
            EventData::RegistryDelete(_) => EventKind::RegistryDelete,
            EventData::RegistryRename(_) => EventKind::RegistryRename,
            EventData::NetworkConnect(_) => EventKind::NetworkConnect,
            EventData::DnsQuery(_) => EventKind::DnsQuery,
            EventData::PipeCreate(_) => EventKind::PipeCreate,
            EventData::PipeConnect(_) => EventKind::PipeConnect,
            EventData::ImageLoad(_) => EventKind::ImageLoad,
            EventData::Other(_) => EventKind::Other,
        }
    }

    /// An empty body of `kind` (every text field empty, every number zero).
    pub fn empty(kind: EventKind) -> EventData<'a> {
        match kind {
            EventKind::ProcessStart => EventData::ProcessStart(Default::default()),
            EventKind::ProcessAccess => EventData::ProcessAccess(Default::default()),
            EventKind::FileCreate => EventData::FileCreate(Default::default()),
            EventKind::FileWrite => EventData::FileWrite(Default::default()),
            EventKind::FileRename => EventData::FileRename(Default::default()),
            EventKind::FileDelete => EventData::FileDelete(Default::default()),
            EventKind::RegistryAdd => EventData::RegistryAdd(Default::default()),
            EventKind::RegistrySet => EventData::RegistrySet(Default::default()),
            EventKind::RegistryDelete => EventData::RegistryDelete(Default::default()),
            EventKind::RegistryRename => EventData::RegistryRename(Default::default()),
            EventKind::NetworkConnect => EventData::NetworkConnect(Default::default()),
            EventKind::DnsQuery => EventData::DnsQuery(Default::default()),
            EventKind::PipeCreate => EventData::PipeCreate(Default::default()),
            EventKind::PipeConnect => EventData::PipeConnect(Default::default()),
            EventKind::ImageLoad => EventData::ImageLoad(Default::default()),
            EventKind::Other => EventData::Other(Default::default()),
        }
    }

    /// The Sysmon names of the fields this body has.
    pub fn field_names(&self) -> &'static [&'static str] {
        match self {
            EventData::ProcessStart(_) => ProcessStart::FIELDS,
            EventData::ProcessAccess(_) => ProcessAccess::FIELDS,
            EventData::FileCreate(_) | EventData::FileWrite(_) | EventData::FileDelete(_) => {
                FileEvent::FIELDS
            }
            EventData::FileRename(_) => FileRename::FIELDS,
            EventData::RegistryAdd(_)
            | EventData::RegistrySet(_)
            | EventData::RegistryDelete(_)
            | EventData::RegistryRename(_) => RegistryEvent::FIELDS,
            EventData::NetworkConnect(_) => NetworkConnect::FIELDS,
            EventData::DnsQuery(_) => DnsQuery::FIELDS,
            EventData::PipeCreate(_) | EventData::PipeConnect(_) => PipeEvent::FIELDS,
            EventData::ImageLoad(_) => ImageLoad::FIELDS,
            EventData::Other(_) => OtherEvent::FIELDS,
        }
    }

    /// The value of the body field named `name`.
    pub fn field(&self, name: &str) -> Option<Value<'_>> {
        with_body!(self, b => b.field(name))
    }

    /// The wire layout of this body.
    pub fn layout(&self) -> &'static BodyLayout {
        Self::layout_of(self.kind())
    }

    /// The wire layout of the body of `kind`.
    pub const fn layout_of(kind: EventKind) -> &'static BodyLayout {
        match kind {
            EventKind::ProcessStart => &ProcessStart::LAYOUT,
            EventKind::ProcessAccess => &ProcessAccess::LAYOUT,
            EventKind::FileCreate | EventKind::FileWrite | EventKind::FileDelete => {
                &FileEvent::LAYOUT
            }
            EventKind::FileRename => &FileRename::LAYOUT,
            EventKind::RegistryAdd
            | EventKind::RegistrySet
            | EventKind::RegistryDelete
            | EventKind::RegistryRename => &RegistryEvent::LAYOUT,
            EventKind::NetworkConnect => &NetworkConnect::LAYOUT,
            EventKind::DnsQuery => &DnsQuery::LAYOUT,
            EventKind::PipeCreate | EventKind::PipeConnect => &PipeEvent::LAYOUT,
            EventKind::ImageLoad => &ImageLoad::LAYOUT,
            EventKind::Other => &OtherEvent::LAYOUT,
        }
    }

    pub(crate) fn write_slots(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        with_body!(self, b => b.write_slots(w))
    }

    pub(crate) fn read_slots(&mut self, v: &EventView<'a>) {
        with_body!(self, b => b.read_slots(v))
    }

    /// Sets the body field named `name` from text; see `set_field` on the body types.
    pub fn set_field(&mut self, name: &str, value: Cow<'a, str>) -> bool {
        with_body!(self, b => b.set_field(name, value))
    }

    /// Calls `f` with every body field's name and value.
    pub fn for_each_field(&self, f: &mut dyn FnMut(&'static str, Value<'_>)) {
        with_body!(self, b => b.for_each_field(f))
    }

    /// Turns every borrowed string into an owned one.
    pub fn into_owned(self) -> EventData<'static> {
        match self {
            EventData::ProcessStart(b) => EventData::ProcessStart(b.into_owned()),
            EventData::ProcessAccess(b) => EventData::ProcessAccess(b.into_owned()),
            EventData::FileCreate(b) => EventData::FileCreate(b.into_owned()),
            EventData::FileWrite(b) => EventData::FileWrite(b.into_owned()),
            EventData::FileRename(b) => EventData::FileRename(b.into_owned()),
            EventData::FileDelete(b) => EventData::FileDelete(b.into_owned()),
            EventData::RegistryAdd(b) => EventData::RegistryAdd(b.into_owned()),
            EventData::RegistrySet(b) => EventData::RegistrySet(b.into_owned()),
            EventData::RegistryDelete(b) => EventData::RegistryDelete(b.into_owned()),
            EventData::RegistryRename(b) => EventData::RegistryRename(b.into_owned()),
            EventData::NetworkConnect(b) => EventData::NetworkConnect(b.into_owned()),
            EventData::DnsQuery(b) => EventData::DnsQuery(b.into_owned()),
            EventData::PipeCreate(b) => EventData::PipeCreate(b.into_owned()),
            EventData::PipeConnect(b) => EventData::PipeConnect(b.into_owned()),
            EventData::ImageLoad(b) => EventData::ImageLoad(b.into_owned()),
            EventData::Other(b) => EventData::Other(b.into_owned()),
        }
    }
}

/// Typed access to the body, one method per body type: `None` when the event is of another kind.
impl<'e> EventView<'e> {
    fn body_if<'v, V>(
        &'v self,
        kinds: &[EventKind],
        view: fn(&'v EventView<'e>) -> V,
    ) -> Option<V> {
        kinds.contains(&self.kind()).then(|| view(self))
    }

    /// The body of a [`EventKind::ProcessStart`] event.
    #[inline]
    pub fn process_start(&self) -> Option<ProcessStartView<'_, 'e>> {
        self.body_if(&[EventKind::ProcessStart], ProcessStartView)
    }

    /// The body of a [`EventKind::ProcessAccess`] event.
    #[inline]
    pub fn process_access(&self) -> Option<ProcessAccessView<'_, 'e>> {
        self.body_if(&[EventKind::ProcessAccess], ProcessAccessView)
    }

    /// The body of a [`EventKind::FileCreate`], [`EventKind::FileWrite`] or [`EventKind::FileDelete`]
    /// event.
    #[inline]
    pub fn file(&self) -> Option<FileEventView<'_, 'e>> {
        self.body_if(
            &[
                EventKind::FileCreate,
                EventKind::FileWrite,
                EventKind::FileDelete,
            ],
            FileEventView,
        )
    }

    /// The body of a [`EventKind::FileRename`] event.
    #[inline]
    pub fn file_rename(&self) -> Option<FileRenameView<'_, 'e>> {
        self.body_if(&[EventKind::FileRename], FileRenameView)
    }

    /// The body of any registry event ([`EventKind::RegistryAdd`], `RegistrySet`, `RegistryDelete`,
    /// `RegistryRename`).
    #[inline]
    pub fn registry(&self) -> Option<RegistryEventView<'_, 'e>> {
        self.body_if(
            &[
                EventKind::RegistryAdd,
                EventKind::RegistrySet,
                EventKind::RegistryDelete,
                EventKind::RegistryRename,
            ],
            RegistryEventView,
        )
    }

    /// The body of a [`EventKind::NetworkConnect`] event.
    #[inline]
    pub fn network(&self) -> Option<NetworkConnectView<'_, 'e>> {
        self.body_if(&[EventKind::NetworkConnect], NetworkConnectView)
    }

    /// The body of a [`EventKind::DnsQuery`] event.
    #[inline]
    pub fn dns(&self) -> Option<DnsQueryView<'_, 'e>> {
        self.body_if(&[EventKind::DnsQuery], DnsQueryView)
    }

    /// The body of a [`EventKind::PipeCreate`] or [`EventKind::PipeConnect`] event.
    #[inline]
    pub fn pipe(&self) -> Option<PipeEventView<'_, 'e>> {
        self.body_if(
            &[EventKind::PipeCreate, EventKind::PipeConnect],
            PipeEventView,
        )
    }

    /// The body of a [`EventKind::ImageLoad`] event.
    #[inline]
    pub fn image_load(&self) -> Option<ImageLoadView<'_, 'e>> {
        self.body_if(&[EventKind::ImageLoad], ImageLoadView)
    }

    /// The body of a [`EventKind::Other`] event (its fields are in the extra fields).
    #[inline]
    pub fn other(&self) -> Option<OtherEventView<'_, 'e>> {
        self.body_if(&[EventKind::Other], OtherEventView)
    }
}

/// The header fields that [`Event::field`] and [`EventView::field`] answer to by name (the host's
/// text is only read when asked for: the view checks it on reading).
pub(crate) struct Header<'v, H: FnOnce() -> &'v str> {
    pub(crate) kind: EventKind,
    pub(crate) host: H,
    pub(crate) pid: u32,
    pub(crate) timestamp: u64,
}

/// What a field name means, for both the typed event and the in-place view: the body field `body`
/// unless it holds its default and an extra field of that name exists (a number that did not parse),
/// then an extra field, then the header fields `Computer`, `ProcessId` (`SourceProcessId` for a
/// process access) and `Timestamp`.
pub(crate) fn resolve_field<'v>(
    name: &str,
    body: Option<Value<'v>>,
    extra: impl FnOnce() -> Option<&'v str>,
    header: Header<'v, impl FnOnce() -> &'v str>,
) -> Option<Value<'v>> {
    match body {
        Some(Value::Str(s)) if !s.is_empty() => return body,
        Some(Value::Int(n)) if n != 0 => return body,
        Some(Value::Bool(true)) => return body,
        _ => {}
    }
    if let Some(value) = extra() {
        return Some(Value::Str(value));
    }
    if body.is_some() {
        return body;
    }
    match name {
        "Computer" => Some(Value::Str((header.host)())),
        "ProcessId" => Some(Value::Int(u64::from(header.pid))),
        "SourceProcessId" if header.kind == EventKind::ProcessAccess => {
            Some(Value::Int(u64::from(header.pid)))
        }
        "Timestamp" => Some(Value::Int(header.timestamp)),
        _ => None,
    }
}

/// One security event: who saw it, when, which process, and the kind-specific body.
///
/// In JSON (rulebox's own event format, one object a line) an event looks like
///
/// ```json
/// {"host":"ws-17","timestamp":1729812989111,"pid":4242,
///  "data":{"ProcessStart":{"Image":"C:\\Windows\\System32\\cmd.exe","CommandLine":"cmd /c whoami"}}}
/// ```
///
/// Fields a source did not report may be left out; text defaults to empty, numbers to zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event<'a> {
    /// The host the event happened on.
    #[serde(borrow, default)]
    pub host: Cow<'a, str>,
    /// When it happened, in milliseconds since the Unix epoch (UTC).
    #[serde(default)]
    pub timestamp: u64,
    /// The process the event is about (for a process start: the new process; for an access: the source).
    #[serde(default)]
    pub pid: u32,
    /// The kind-specific body.
    #[serde(borrow)]
    pub data: EventData<'a>,
    /// Fields the source reported that have no typed slot, or whose value did not parse as the slot's type.
    #[serde(borrow, default)]
    pub extra: Vec<Field<'a>>,
}

impl<'a> Event<'a> {
    /// A new event with `data`, no host, time zero and pid zero.
    pub fn new(data: EventData<'a>) -> Event<'a> {
        Event {
            host: Cow::Borrowed(""),
            timestamp: 0,
            pid: 0,
            data,
            extra: Vec::new(),
        }
    }

    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        self.data.kind()
    }

    /// The value of the field named `name`: a body field, an [`extra`](Self::extra) field, or one of the
    /// header fields `Computer` (host), `ProcessId` (pid; `SourceProcessId` for a process access) and
    /// `Timestamp`.
    ///
    /// A body field that holds its default while an extra field of the same name exists (a number that
    /// did not parse) yields the extra field's text, so a rule sees what the source reported.
    pub fn field(&self, name: &str) -> Option<Value<'_>> {
        let extra = || {
            self.extra
                .iter()
                .find(|f| f.name == name)
                .map(|f| &*f.value)
        };
        resolve_field(
            name,
            self.data.field(name),
            extra,
            Header {
                kind: self.kind(),
                host: || &*self.host,
                pid: self.pid,
                timestamp: self.timestamp,
            },
        )
    }

    /// The text of the field named `name`, or `""` when the event has no such text field.
    pub fn text(&self, name: &str) -> &str {
        match self.field(name) {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }

    /// Turns every borrowed string into an owned one.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            host: Cow::Owned(self.host.into_owned()),
            timestamp: self.timestamp,
            pid: self.pid,
            data: self.data.into_owned(),
            extra: self
                .extra
                .into_iter()
                .map(|f| Field {
                    name: Cow::Owned(f.name.into_owned()),
                    value: Cow::Owned(f.value.into_owned()),
                })
                .collect(),
        }
    }

    /// Encodes the event in the wire format the host hands to rules (see [`crate::wire`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf)?;
        Ok(buf)
    }

    /// Appends the event's wire form to `buf` (reusing its allocation). On error `buf` may hold a
    /// partial encoding after its old length: truncate it.
    pub fn encode_into(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        Writer::encode(self, buf)
    }

    /// Decodes a whole event from the wire format, borrowing its strings from `bytes`; every text is
    /// checked. Rules read events lazily with [`EventView`] instead.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Event<'a>, WireError> {
        EventView::new(bytes)?.to_event()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn sample() -> Event<'static> {
        let body = ProcessStart {
            image: "C:\\Windows\\System32\\cmd.exe".into(),
            command_line: "cmd.exe /c whoami".into(),
            parent_pid: 7,
            ..Default::default()
        };
        Event {
            host: "ws-1".into(),
            timestamp: 1_700_000_000_000,
            pid: 42,
            data: EventData::ProcessStart(body),
            extra: Vec::new(),
        }
    }

    #[test]
    fn wire_round_trip_borrows_text() {
        let event = sample();
        let bytes = event.to_bytes().unwrap();
        let back = Event::from_bytes(&bytes).unwrap();
        assert_eq!(back, event);
        match &back.data {
            EventData::ProcessStart(p) => {
                assert!(matches!(p.image, Cow::Borrowed(_)), "text must borrow")
            }
            other => panic!("wrong kind {other:?}"),
        }
    }

    #[test]
    fn json_form_uses_sysmon_names_and_defaults() {
        let json = r#"{"host":"h","pid":5,"data":{"NetworkConnect":{"Image":"a.exe","DestinationPort":4444,"Initiated":true}}}"#;
        let event: Event = serde_json::from_str(json).unwrap();
        assert_eq!(event.kind(), EventKind::NetworkConnect);
        assert_eq!(event.field("DestinationPort"), Some(Value::Int(4444)));
        assert_eq!(event.field("Initiated"), Some(Value::Bool(true)));
        assert_eq!(event.field("Image"), Some(Value::Str("a.exe")));
        assert_eq!(event.field("DestinationIp"), Some(Value::Str("")));
        assert_eq!(event.field("Computer"), Some(Value::Str("h")));
        assert_eq!(event.field("NoSuchField"), None);
    }

    #[test]
    fn set_field_parses_numbers_and_refuses_garbage() {
        let mut data = EventData::empty(EventKind::NetworkConnect);
        assert!(data.set_field("DestinationPort", "0x1bb".into()));
        assert_eq!(data.field("DestinationPort"), Some(Value::Int(443)));
        assert!(
            !data.set_field("DestinationPort", "70000".into()),
            "out of range for u16"
        );
        assert!(!data.set_field("Initiated", "maybe".into()));
        assert!(!data.set_field("Nope", "x".into()));
    }

    #[test]
    fn extra_field_shadows_unparsed_default() {
        let mut event = Event::new(EventData::empty(EventKind::NetworkConnect));
        event.extra.push(Field {
            name: "DestinationPort".into(),
            value: "-".into(),
        });
        assert_eq!(event.field("DestinationPort"), Some(Value::Str("-")));
        assert_eq!(event.field("DestinationPort").unwrap().to_string(), "-");
    }

    #[test]
    fn every_kind_has_an_empty_body_of_that_kind() {
        for kind in EventKind::ALL {
            let data = EventData::empty(*kind);
            assert_eq!(data.kind(), *kind);
            let mut n = 0;
            data.for_each_field(&mut |name, _| {
                assert!(data.field_names().contains(&name));
                n += 1;
            });
            assert_eq!(n, data.field_names().len());
        }
    }
}
