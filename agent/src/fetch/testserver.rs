//! A hostile HTTP server on 127.0.0.1 for the fetcher's tests: each connection's request goes to a
//! handler that returns the raw bytes to send (headers included), then the connection closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the handler sees of a request.
pub struct Request {
    pub line: String,
    pub range_from: Option<u64>,
    /// The path of the request line (`/v1/checkin`).
    pub path: String,
    /// The body (read up to its `Content-Length`, at most 4 MiB).
    pub body: Vec<u8>,
}

/// What to send back.
pub enum Reply {
    /// These bytes, then close.
    Raw(Vec<u8>),
    /// Wait this long, then close without a byte.
    Stall(Duration),
    /// The first bytes (the head and the start of a body), then the second one byte every
    /// `Duration`, then nothing (the connection held open for 10 s): a body that never ends in time.
    Trickle(Vec<u8>, Duration, Vec<u8>),
}

/// A complete answer with a status, headers and body.
pub fn answer(status: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    Reply::Raw(bytes)
}

/// `200` with a correct `Content-Length`.
pub fn ok(body: &[u8]) -> Reply {
    answer(
        "200 OK",
        &[("Content-Length", body.len().to_string())],
        body,
    )
}

/// A server whose handler is `handler`; returns its base URL and the requests it saw.
pub fn serve(
    handler: impl Fn(&Request, usize) -> Reply + Send + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut range_from = None;
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    range_from = v.trim().trim_end_matches('-').parse().ok();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse::<usize>().unwrap_or(0).min(4 << 20);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let request = Request {
                line: line.trim().to_owned(),
                range_from,
                path,
                body,
            };
            log.lock()
                .unwrap()
                .push(format!("{} range={:?}", request.line, range_from));
            match handler(&request, n) {
                Reply::Raw(bytes) => {
                    let _ = stream.write_all(&bytes);
                }
                Reply::Stall(d) => std::thread::sleep(d),
                Reply::Trickle(head, every, rest) => {
                    // On a thread of its own: the server keeps answering others meanwhile.
                    std::thread::spawn(move || {
                        let _ = stream.write_all(&head);
                        for byte in rest {
                            std::thread::sleep(every);
                            if stream.write_all(&[byte]).is_err() {
                                return;
                            }
                        }
                        std::thread::sleep(Duration::from_secs(10));
                    });
                }
            }
        }
    });
    (url, seen)
}
