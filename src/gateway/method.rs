//! Finding the API method of a request: the path (`/platform_api/<Method>/`, after an
//! `/accounts/<id>/` prefix), `cmd` in the query, and `cmd` in an urlencoded or multipart body.
//! Only the body's first 64 KiB are read (chunked or not, a `cmd` split across chunks included);
//! what was read is sent on ahead of the rest, frame for frame, so the upstream gets the body
//! byte for byte. Two places (or two `cmd` fields) naming different methods: 403.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt as _;

use crate::body::{Body, BoxError};
use crate::error::{ErrorKind, ProxyError};
use crate::target::cmds_from_form;

/// How much of a body is searched for `cmd`.
pub const BODY_WINDOW: usize = 64 * 1024;

/// The outcome of method detection: the body to forward (what was read, then the rest) and the
/// method, or a 403 when places disagree.
pub struct Detected {
    /// The body, byte for byte as it came.
    pub body: Body,
    /// The method, if found.
    pub method: Result<Option<String>, ProxyError>,
}

/// What kind of body may hold `cmd`.
#[derive(Debug, PartialEq)]
pub(crate) enum Form {
    Urlencoded,
    Multipart(Vec<u8>),
}

pub(crate) fn form_kind(headers: &http::HeaderMap) -> Option<Form> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mut parts = ct.split(';');
    let media = parts.next()?.trim();
    if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Some(Form::Urlencoded);
    }
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty() && value.len() <= 200)
            .then(|| Form::Multipart(value.as_bytes().to_vec()))
    })
}

/// Every `cmd` of a body's bytes, as [`detect`] reads them; with `complete` false the data may
/// end anywhere, and whatever it cuts short is left out.
pub(crate) fn cmds_of(kind: &Form, data: &[u8], complete: bool) -> Vec<String> {
    match kind {
        Form::Urlencoded => cmds_from_form(data, complete),
        Form::Multipart(boundary) => cmds_from_multipart(data, boundary, complete),
    }
}

/// Every `cmd` field of multipart data (raw values, no decoding). With `complete` false, a part
/// cut short at the end of the window is left out.
fn cmds_from_multipart(data: &[u8], boundary: &[u8], complete: bool) -> Vec<String> {
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary);
    let mut out = Vec::new();
    // The first delimiter: at the very start, or at the start of a line after a preamble.
    let mut pos = if data.starts_with(&delimiter) {
        delimiter.len()
    } else {
        match find_line_delimiter(data, 0, &delimiter) {
            Some((_, after)) => after,
            None => return out,
        }
    };
    loop {
        // After a delimiter: `--` closes the body; else padding and the line end.
        if data[pos..].starts_with(b"--") {
            break;
        }
        while data.get(pos).is_some_and(|b| *b == b' ' || *b == b'\t') {
            pos += 1;
        }
        if data[pos..].starts_with(b"\r\n") {
            pos += 2;
        } else if data[pos..].starts_with(b"\n") {
            pos += 1;
        } else {
            break;
        }
        let Some((headers_end, content_start)) = find_blank_line(data, pos) else {
            break;
        };
        let is_cmd = part_name(&data[pos..headers_end]).is_some_and(|n| n == b"cmd");
        let Some((content_end, after)) = find_line_delimiter(data, content_start, &delimiter)
        else {
            if is_cmd && complete {
                // A body that ends without its closing delimiter: take what is there.
                out.push(String::from_utf8_lossy(&data[content_start..]).into_owned());
            }
            break;
        };
        if is_cmd {
            out.push(String::from_utf8_lossy(&data[content_start..content_end]).into_owned());
        }
        pos = after;
    }
    out
}

/// The next `\n--boundary` at or after `from` (a preceding `\r` belongs to it): (where the
/// content before it ends, where the bytes after the delimiter start).
fn find_line_delimiter(data: &[u8], from: usize, delimiter: &[u8]) -> Option<(usize, usize)> {
    let mut i = from;
    while i < data.len() {
        let nl = i + data[i..].iter().position(|b| *b == b'\n')?;
        if data[nl + 1..].starts_with(delimiter) {
            let end = if nl > from && data[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            return Some((end, nl + 1 + delimiter.len()));
        }
        i = nl + 1;
    }
    None
}

/// The end of a part's headers (a blank line) at or after `from`: (end of headers, start of
/// content).
fn find_blank_line(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    // Headers that are empty: the content starts at once after a blank line.
    loop {
        if data[i..].starts_with(b"\r\n") {
            return Some((i, i + 2));
        }
        if data[i..].starts_with(b"\n") {
            return Some((i, i + 1));
        }
        let nl = i + data[i..].iter().position(|b| *b == b'\n')?;
        i = nl + 1;
        if i >= data.len() {
            return None;
        }
    }
}

/// The `name` parameter of a part's `Content-Disposition: form-data; name="..."`.
fn part_name(headers: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(headers).ok()?;
    text.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        if !field.trim().eq_ignore_ascii_case("content-disposition") {
            return None;
        }
        let mut params = value.split(';');
        if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
            return None;
        }
        params.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            if !k.trim().eq_ignore_ascii_case("name") {
                return None;
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some(v.as_bytes().to_vec())
        })
    })
}

/// Read up to `window` bytes: the frames read, the bytes seen (at most the window), whether the
/// body ended, and the error that stopped it, if any.
async fn read_window(
    body: &mut Body,
    window: usize,
) -> (VecDeque<Frame<Bytes>>, Vec<u8>, bool, Option<BoxError>) {
    let mut frames = VecDeque::new();
    let mut seen = Vec::new();
    if body.is_end_stream() {
        return (frames, seen, true, None);
    }
    while seen.len() < window {
        match body.frame().await {
            None => return (frames, seen, true, None),
            Some(Err(e)) => return (frames, seen, false, Some(e)),
            Some(Ok(frame)) => {
                let trailers = frame.is_trailers();
                if let Some(data) = frame.data_ref() {
                    let take = data.len().min(window - seen.len());
                    seen.extend_from_slice(&data[..take]);
                }
                frames.push_back(frame);
                if trailers || body.is_end_stream() {
                    return (frames, seen, true, None);
                }
            }
        }
    }
    (frames, seen, false, None)
}

/// Detect the API method of a request whose path names `path_method` (see
/// [`crate::target::ApiTarget::method`]). The body comes back whole: read frames first, then the
/// rest of the stream.
pub async fn detect(
    parts: &http::request::Parts,
    path_method: Option<&str>,
    body: Body,
) -> Detected {
    detect_within(parts, path_method, body, BODY_WINDOW).await
}

/// [`detect`] with a window of `window` bytes (the fuzz checks use small ones, to put the
/// window's edge anywhere in a small body).
pub(crate) async fn detect_within(
    parts: &http::request::Parts,
    path_method: Option<&str>,
    mut body: Body,
    window: usize,
) -> Detected {
    let mut found: Vec<(&'static str, String)> = Vec::new();
    if let Some(m) = path_method {
        found.push(("the path", m.to_owned()));
    }
    if let Some(q) = parts.uri.query() {
        found.extend(
            cmds_from_form(q.as_bytes(), true)
                .into_iter()
                .map(|c| ("the query's cmd", c)),
        );
    }
    let body = match form_kind(&parts.headers) {
        None => body,
        Some(kind) => {
            let (frames, seen, ended, error) = read_window(&mut body, window).await;
            let buffered: u64 = frames
                .iter()
                .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
                .sum();
            // The body is read whole only when it ended within the window: a last frame that
            // crossed it (a body that came in one piece) was cut, and what was cut off could
            // finish a method name that reads complete without it.
            let complete = ended && error.is_none() && seen.len() as u64 == buffered;
            let cmds = cmds_of(&kind, &seen, complete);
            found.extend(cmds.into_iter().map(|c| ("the body's cmd", c)));
            Replay {
                frames,
                buffered,
                error,
                rest: (!ended).then_some(body),
            }
            .boxed_unsync()
        }
    };
    Detected {
        body,
        method: agree(found),
    }
}

/// One method from every place that named one, or 403 when they differ (ignoring case).
fn agree(found: Vec<(&'static str, String)>) -> Result<Option<String>, ProxyError> {
    let mut iter = found.into_iter();
    let Some((first_place, first)) = iter.next() else {
        return Ok(None);
    };
    for (place, other) in iter {
        if !other.eq_ignore_ascii_case(&first) {
            let shown =
                |s: &str| -> String { s.chars().filter(|c| !c.is_control()).take(64).collect() };
            return Err(ProxyError::new(
                ErrorKind::ClientForbidden,
                format!(
                    "the request names two API methods: `{}` in {first_place} and `{}` in {place}; name one",
                    shown(&first),
                    shown(&other)
                ),
            ));
        }
    }
    Ok(Some(first))
}

/// The frames read during detection, then the rest of the original body.
struct Replay {
    frames: VecDeque<Frame<Bytes>>,
    /// Data bytes still in `frames` (for the size hint).
    buffered: u64,
    /// The error that stopped reading, yielded after the frames.
    error: Option<BoxError>,
    /// The unread remainder; `None` once the body ended while reading.
    rest: Option<Body>,
}

impl HttpBody for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.frames.pop_front() {
            if let Some(d) = frame.data_ref() {
                self.buffered -= d.len() as u64;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(e) = self.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |r| r.size_hint());
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + self.buffered);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + self.buffered);
        }
        hint
    }
}

#[cfg(test)]
mod tests;
