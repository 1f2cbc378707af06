//! The HTTP client of the fetcher (`ureq`, plain threads): every body read capped by a size the
//! caller takes from signed data (or a protocol limit), no redirect ever followed, every failure
//! classified.

use std::io::{Read, Write};
use std::time::Duration;

use rulebox_controlplane_proto::FetchFailureClass;

use super::error::FetchError;

/// How a download into a file went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The server honoured the `Range`: the bytes were appended after the `offset` already held.
    Resumed,
    /// The server sent the whole file (no `Range` asked, or it was ignored): the file was rewritten
    /// from its start.
    Whole,
}

/// An HTTP client for the controller and the repository.
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
}

/// Reads at most `cap` bytes of `reader` into `out`, failing with `too_large` if there are more.
fn copy_capped(
    reader: &mut impl Read,
    out: &mut impl Write,
    cap: u64,
    url: &str,
) -> Result<u64, FetchError> {
    let mut limited = reader.take(cap.saturating_add(1));
    let mut buf = [0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(FetchError::network(format!(
                    "{url}: the body broke off after {total} bytes: {e}"
                )));
            }
        };
        total += n as u64;
        if total > cap {
            return Err(FetchError::new(
                FetchFailureClass::TooLarge,
                format!("{url}: the server sent more than the {cap} bytes signed data allows"),
            ));
        }
        out.write_all(&buf[..n])
            .map_err(|e| FetchError::disk(&format!("write what {url} sent"), &e))?;
    }
    Ok(total)
}

fn classify(url: &str, error: ureq::Error) -> FetchError {
    match error {
        ureq::Error::StatusCode(code) => FetchError::status(format!("{url}: HTTP {code}")),
        ureq::Error::BodyExceedsLimit(n) => FetchError::new(
            FetchFailureClass::TooLarge,
            format!("{url}: body over {n} bytes"),
        ),
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => {
            FetchError::status(format!("{url}: a redirect (never followed)"))
        }
        other => FetchError::network(format!("{url}: {other}")),
    }
}

impl Http {
    /// A client whose every request (connect, headers, body) must end within `timeout`.
    pub fn new(timeout: Duration) -> Http {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            // A redirect could send the host anywhere (another host, a file of another release):
            // the repository and the controller are addressed directly, so none is followed.
            .max_redirects(0)
            .http_status_as_error(false)
            .max_response_header_size(64 << 10)
            .user_agent(concat!("rulebox-agent/", env!("CARGO_PKG_VERSION")))
            .build();
        Http {
            agent: config.into(),
        }
    }

    fn check_status(url: &str, status: u16, allowed: &[u16]) -> Result<(), FetchError> {
        if allowed.contains(&status) {
            return Ok(());
        }
        if (300..400).contains(&status) {
            return Err(FetchError::status(format!(
                "{url}: HTTP {status}, a redirect (never followed)"
            )));
        }
        Err(FetchError::status(format!("{url}: HTTP {status}")))
    }

    /// `GET url`, the body capped at `cap` bytes (an announced or actual longer body is
    /// `too_large`). Only `200` is accepted.
    pub fn get_capped(&self, url: &str, cap: u64) -> Result<Vec<u8>, FetchError> {
        self.get_optional(url, cap)?
            .ok_or_else(|| FetchError::status(format!("{url}: HTTP 404")))
    }

    /// `GET url` like [`get_capped`](Self::get_capped), but a `404` is `Ok(None)` (a file that is
    /// not published yet, such as the next root of the chain).
    pub fn get_optional(&self, url: &str, cap: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let response = self.agent.get(url).call().map_err(|e| classify(url, e))?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        Self::check_status(url, status, &[200])?;
        let mut body = response.into_body();
        if body.content_length().is_some_and(|n| n > cap) {
            return Err(FetchError::new(
                FetchFailureClass::TooLarge,
                format!("{url}: announces more than the {cap} bytes allowed"),
            ));
        }
        let mut out = Vec::new();
        copy_capped(&mut body.as_reader(), &mut out, cap, url)?;
        Ok(Some(out))
    }

    /// `GET url` into `file`, which already holds `offset` bytes of it: asks for the rest with
    /// `Range: bytes=offset-` when `offset > 0`; writes at most `size` bytes in all (more is
    /// `too_large`). A server that ignores the range (`200`) gets the file rewritten from its start;
    /// a `206` whose `Content-Range` does not start at `offset` is refused.
    pub fn get_into(
        &self,
        url: &str,
        offset: u64,
        size: u64,
        file: &mut std::fs::File,
    ) -> Result<Written, FetchError> {
        use std::io::Seek;
        let mut request = self.agent.get(url);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request.call().map_err(|e| classify(url, e))?;
        let status = response.status().as_u16();
        Self::check_status(url, status, &[200, 206])?;
        let (written, start) = if status == 206 && offset > 0 {
            let range = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !range.starts_with(&format!("bytes {offset}-")) {
                return Err(FetchError::status(format!(
                    "{url}: a partial answer for another range ({:?})",
                    rulebox_runtime::text::Escaped(range).to_string()
                )));
            }
            (Written::Resumed, offset)
        } else if status == 206 {
            return Err(FetchError::status(format!(
                "{url}: a partial answer to a request for the whole file"
            )));
        } else {
            (Written::Whole, 0)
        };
        let disk = |e: std::io::Error| FetchError::disk(&format!("stage {url}"), &e);
        file.set_len(start).map_err(disk)?;
        file.seek(std::io::SeekFrom::Start(start)).map_err(disk)?;
        let mut body = response.into_body();
        let cap = size.saturating_sub(start);
        if body.content_length().is_some_and(|n| n > cap) {
            return Err(FetchError::new(
                FetchFailureClass::TooLarge,
                format!("{url}: announces more than the {size} bytes signed data allows"),
            ));
        }
        copy_capped(&mut body.as_reader(), file, cap, url)?;
        Ok(written)
    }

    /// `POST url` with a JSON `body` and `headers`; returns the status and the body (capped at
    /// `cap` bytes). Every status is returned: the caller reads error bodies.
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        cap: u64,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let mut request = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send(body).map_err(|e| classify(url, e))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            return Err(FetchError::status(format!(
                "{url}: HTTP {status}, a redirect (never followed)"
            )));
        }
        let mut out = Vec::new();
        copy_capped(&mut response.into_body().as_reader(), &mut out, cap, url)?;
        Ok((status, out))
    }
}
