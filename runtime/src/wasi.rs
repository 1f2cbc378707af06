//! The WASI preview 1 functions the host implements itself, in place of `wasmtime-wasi`'s: those
//! whose work depends on what the guest asks for (bytes written, read or generated), each bounded
//! per call and charged to the rule's fuel, and those that must not do what WASI says
//! (`proc_exit`, `poll_oneoff`).
//!
//! A host call runs outside the rule's deadline: the deadline interrupts WebAssembly code, not the
//! host. So no host call may do unbounded work, whatever the guest passes: every WASI function the
//! host keeps from `wasmtime-wasi` does constant work in the context a rule gets (no preopened
//! directories, no arguments or environment, empty stdin, no sockets) and copies at most
//! [`MAX_HOST_CALL_BYTES`] from the guest (its host-call fuel), and the ones here do at most
//! [`MAX_WRITE_PER_CALL`] or [`MAX_RANDOM_PER_CALL`] bytes of work and charge the rule
//! [`WASI_CALL_FUEL`] plus one unit per byte. A guest looping on host calls returns to its own code
//! between them, where its fuel and deadline stop it.

use rulebox_sdk::abi::exports;
use wasmtime::{Caller, Extern, Linker, Trap};

use crate::guest_log::MAX_LOG_MESSAGE;
use crate::host::{HostState, HostTrap};

/// Most bytes `fd_write` takes from the guest per call; the rest of the call's buffers are left
/// for the next call (a partial write, which WASI allows and every writer handles).
pub const MAX_WRITE_PER_CALL: usize = 4096;

/// Most bytes `random_get` fills per call; a larger request is refused with `EINVAL`.
pub const MAX_RANDOM_PER_CALL: usize = 64 << 10;

/// Most bytes any WASI function of `wasmtime-wasi` copies from the guest in one call (its host-call
/// fuel); a call asking for more fails with `ENOMEM`.
pub const MAX_HOST_CALL_BYTES: usize = 64 << 10;

/// Most I/O vectors one `fd_write` or `fd_read` call may pass (POSIX's `IOV_MAX`).
const MAX_IOVS: u32 = 1024;

/// Fuel every WASI call the host implements itself costs the rule, on top of one unit per byte of
/// work: a host call costs about as much as a few hundred WebAssembly instructions.
pub const WASI_CALL_FUEL: u64 = 500;

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_INVAL: i32 = 28;
/// WASI errno `ENOTSUP`.
const ERRNO_NOTSUP: i32 = 58;

/// Replaces `wasmtime-wasi`'s versions of the functions of this module in `linker` (which already
/// holds them all).
pub(crate) fn shadow(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let module = rulebox_sdk::abi::imports::WASI_P1_MODULE;
    linker.allow_shadowing(true);
    linker.func_wrap(module, "fd_write", fd_write)?;
    linker.func_wrap(module, "fd_read", fd_read)?;
    linker.func_wrap(module, "random_get", random_get)?;
    linker.func_wrap(module, "proc_exit", proc_exit)?;
    // A rule must never block its worker thread: sleeping through `poll_oneoff` would stall every
    // rule on that thread without the deadline seeing it. Refuse it.
    linker.func_wrap(
        module,
        "poll_oneoff",
        |_: Caller<'_, HostState>, _in: i32, _out: i32, _n: i32, _nevents: i32| -> i32 {
            ERRNO_NOTSUP
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Takes `cost` fuel from the rule, or stops it as out of fuel.
fn charge(caller: &mut Caller<'_, HostState>, cost: u64) -> wasmtime::Result<()> {
    let fuel = caller.get_fuel()?;
    if fuel < cost {
        caller.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    caller.set_fuel(fuel - cost)
}

fn memory(caller: &mut Caller<'_, HostState>) -> Option<wasmtime::Memory> {
    match caller.get_export(exports::MEMORY) {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// `len` bytes at `ptr` of `data`, or the trap for a range outside it.
fn range(
    data: &[u8],
    ptr: u32,
    len: usize,
    function: &'static str,
) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = usize::try_from(ptr).unwrap_or(usize::MAX);
    match start.checked_add(len) {
        Some(end) if end <= data.len() => Ok(start..end),
        _ => Err(HostTrap::BadPointer {
            function,
            ptr,
            len: u64::try_from(len).unwrap_or(u64::MAX),
            memory: u64::try_from(data.len()).unwrap_or(u64::MAX),
        }
        .into()),
    }
}

fn read_u32(data: &[u8], ptr: u32, function: &'static str) -> wasmtime::Result<u32> {
    let r = range(data, ptr, 4, function)?;
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&data[r]);
    Ok(u32::from_le_bytes(bytes))
}

fn write_u32(
    data: &mut [u8],
    ptr: u32,
    value: u32,
    function: &'static str,
) -> wasmtime::Result<()> {
    let r = range(data, ptr, 4, function)?;
    data[r].copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// `fd_write(fd, iovs, iovs_len, nwritten) -> errno`: stdout and stderr go to the rule's
/// rate-limited log, line by line (a line longer than a log message is cut into several, and what
/// a call leaves without a line break is a message of its own, as a flushed stream would be). At
/// most [`MAX_WRITE_PER_CALL`] bytes are taken per call.
fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> wasmtime::Result<i32> {
    charge(&mut caller, WASI_CALL_FUEL)?;
    let stream = match fd {
        1 => "stdout",
        2 => "stderr",
        _ => return Ok(ERRNO_BADF),
    };
    let (iovs, count, nwritten) = (
        iovs.cast_unsigned(),
        iovs_len.cast_unsigned(),
        nwritten.cast_unsigned(),
    );
    if count > MAX_IOVS {
        return Ok(ERRNO_INVAL);
    }
    let Some(memory) = memory(&mut caller) else {
        return Ok(ERRNO_BADF);
    };
    let mut taken: Vec<u8> = Vec::new();
    {
        let data = memory.data(&caller);
        for i in 0..count {
            let at = iovs
                .checked_add(i * 8)
                .ok_or_else(|| bad(iovs, "fd_write"))?;
            let buf = read_u32(data, at, "fd_write")?;
            let len = read_u32(
                data,
                at.checked_add(4).ok_or_else(|| bad(at, "fd_write"))?,
                "fd_write",
            )?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            // The whole buffer must be the guest's, even the part left for the next call.
            let r = range(data, buf, len, "fd_write")?;
            let room = MAX_WRITE_PER_CALL - taken.len();
            taken.extend_from_slice(&data[r.start..r.start + len.min(room)]);
            if taken.len() == MAX_WRITE_PER_CALL {
                break;
            }
        }
    }
    charge(&mut caller, u64::try_from(taken.len()).unwrap_or(u64::MAX))?;
    let n = u32::try_from(taken.len()).unwrap_or(u32::MAX);
    write_u32(memory.data_mut(&mut caller), nwritten, n, "fd_write")?;
    let log = caller.data().log.clone();
    if let Ok(mut log) = log.lock() {
        let mut lines = taken.split(|&b| b == b'\n').peekable();
        while let Some(line) = lines.next() {
            // What follows the last line break is a message only if it is not empty.
            if lines.peek().is_none() && line.is_empty() {
                break;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text = String::from_utf8_lossy(line);
            let mut rest: &str = &text;
            loop {
                let piece = &rest[..rest.floor_char_boundary(MAX_LOG_MESSAGE)];
                log.log(stream, 2, piece);
                rest = &rest[piece.len()..];
                if rest.is_empty() {
                    break;
                }
            }
        }
    }
    Ok(ERRNO_SUCCESS)
}

fn bad(ptr: u32, function: &'static str) -> wasmtime::Error {
    HostTrap::BadPointer {
        function,
        ptr,
        len: 0,
        memory: 0,
    }
    .into()
}

/// `fd_read(fd, iovs, iovs_len, nread) -> errno`: stdin is empty (end of file at once); nothing
/// else can be read.
fn fd_read(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    _iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> wasmtime::Result<i32> {
    charge(&mut caller, WASI_CALL_FUEL)?;
    if fd != 0 {
        return Ok(ERRNO_BADF);
    }
    if iovs_len.cast_unsigned() > MAX_IOVS {
        return Ok(ERRNO_INVAL);
    }
    let Some(memory) = memory(&mut caller) else {
        return Ok(ERRNO_BADF);
    };
    write_u32(
        memory.data_mut(&mut caller),
        nread.cast_unsigned(),
        0,
        "fd_read",
    )?;
    Ok(ERRNO_SUCCESS)
}

/// `random_get(buf, len) -> errno`: at most [`MAX_RANDOM_PER_CALL`] bytes from the operating
/// system's generator.
fn random_get(mut caller: Caller<'_, HostState>, buf: i32, len: i32) -> wasmtime::Result<i32> {
    let len = usize::try_from(len.cast_unsigned()).unwrap_or(usize::MAX);
    if len > MAX_RANDOM_PER_CALL {
        charge(&mut caller, WASI_CALL_FUEL)?;
        return Ok(ERRNO_INVAL);
    }
    charge(
        &mut caller,
        WASI_CALL_FUEL + u64::try_from(len).unwrap_or(u64::MAX),
    )?;
    let Some(memory) = memory(&mut caller) else {
        return Ok(ERRNO_BADF);
    };
    let data = memory.data_mut(&mut caller);
    let r = range(data, buf.cast_unsigned(), len, "random_get")?;
    if getrandom::fill(&mut data[r]).is_err() {
        return Ok(ERRNO_NOTSUP);
    }
    Ok(ERRNO_SUCCESS)
}

/// `proc_exit(code)`: a rule returns from every call; one that tries to exit is stopped (a fault of
/// its own, `guest_exit`).
fn proc_exit(_: Caller<'_, HostState>, code: i32) -> wasmtime::Result<()> {
    Err(HostTrap::Exit(code.cast_unsigned()).into())
}
