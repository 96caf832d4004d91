//! Incremental decoding of event streams — `text/event-stream` (server-sent events) and NDJSON —
//! from network chunks of any size into whole events.

use std::collections::VecDeque;

use bytes::Bytes;
use dataplane_spi::TransferError;

/// The largest event (or line) accepted; a longer one fails the stream with
/// [`TransferError::Rejected`], so that a server cannot make the source buffer without bound.
pub const MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// One decoded event: its canonical serialisation and its id, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) chunk: Bytes,
    pub(crate) id: Option<String>,
}

/// What decoding yields, in stream order; an error ends the stream.
pub(crate) type Decoded = VecDeque<Result<Event, TransferError>>;

fn too_long() -> TransferError {
    TransferError::Rejected(format!(
        "the event stream sent an event or line longer than {MAX_EVENT_SIZE} bytes"
    ))
}

/// Splits bytes into lines across chunks: on `\n`, and also on `\r` and `\r\n` when
/// `cr_ends_line` (`text/event-stream`); a `\r\n` split between two chunks is one line end.
/// Strips a UTF-8 byte order mark at the start of the stream.
#[derive(Debug)]
struct Lines {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    cr_ends_line: bool,
    /// The last chunk ended with a `\r` that ended a line: a `\n` starting the next is its end.
    after_cr: bool,
    /// No line has been completed yet (the byte order mark check is pending).
    first: bool,
}

impl Lines {
    fn new(cr_ends_line: bool) -> Self {
        Self {
            partial: Vec::new(),
            cr_ends_line,
            after_cr: false,
            first: true,
        }
    }

    /// Calls `on_line` with each line that `bytes` completes (without its end).
    fn feed(
        &mut self,
        mut bytes: &[u8],
        mut on_line: impl FnMut(&[u8]),
    ) -> Result<(), TransferError> {
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        let cr_ends_line = self.cr_ends_line;
        while let Some(at) = bytes
            .iter()
            .position(|b| *b == b'\n' || (cr_ends_line && *b == b'\r'))
        {
            let (line, end) = (&bytes[..at], bytes[at]);
            if self.partial.is_empty() {
                self.emit(line, &mut on_line);
            } else {
                if self.partial.len() + line.len() > MAX_EVENT_SIZE {
                    return Err(too_long());
                }
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.emit(&whole, &mut on_line);
                // Keep the allocation for the next partial line.
                whole.clear();
                self.partial = whole;
            }
            bytes = &bytes[at + 1..];
            if end == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if self.partial.len() + bytes.len() > MAX_EVENT_SIZE {
            return Err(too_long());
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    fn emit(&mut self, line: &[u8], on_line: &mut impl FnMut(&[u8])) {
        let line = if std::mem::take(&mut self.first) {
            line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
        } else {
            line
        };
        on_line(line);
    }

    /// The unterminated last line, if the stream ended inside one.
    fn rest(&mut self) -> Option<Vec<u8>> {
        if self.partial.is_empty() {
            return None;
        }
        let mut rest = std::mem::take(&mut self.partial);
        if std::mem::take(&mut self.first) && rest.starts_with(b"\xEF\xBB\xBF") {
            rest.drain(..3);
        }
        Some(rest)
    }
}

/// The event being assembled from `text/event-stream` lines.
#[derive(Debug, Default)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    /// The `data` lines, each followed by `\n`.
    data: String,
    has_data: bool,
}

impl SseEvent {
    fn line(&mut self, line: &[u8], out: &mut Decoded) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // a comment (often a keep-alive)
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"data" => {
                if self.data.len() + value.len() >= MAX_EVENT_SIZE {
                    out.push_back(Err(too_long()));
                    return;
                }
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            // An empty id counts as none; one with NUL is ignored (as browsers do).
            b"id" if !value.contains('\0') => {
                self.id = (!value.is_empty()).then(|| value.into_owned());
            }
            b"event" => self.event = (!value.is_empty()).then(|| value.into_owned()),
            _ => {} // `retry` and unknown fields
        }
    }

    /// Ends the event at a blank line: an event without `data` is dropped, as browsers do.
    fn dispatch(&mut self, out: &mut Decoded) {
        let Self {
            id,
            event,
            data,
            has_data,
        } = std::mem::take(self);
        if !has_data {
            return;
        }
        let data = data.strip_suffix('\n').unwrap_or(&data);
        let mut text = String::with_capacity(data.len() + 64);
        if let Some(id) = &id {
            text.push_str("id: ");
            text.push_str(id);
            text.push('\n');
        }
        if let Some(event) = &event {
            text.push_str("event: ");
            text.push_str(event);
            text.push('\n');
        }
        for line in data.split('\n') {
            text.push_str("data: ");
            text.push_str(line);
            text.push('\n');
        }
        text.push('\n');
        out.push_back(Ok(Event {
            chunk: Bytes::from(text),
            id,
        }));
    }
}

/// An NDJSON line's event.
#[derive(Debug)]
struct NdjsonEvent {
    id_field: String,
    line_number: u64,
}

impl NdjsonEvent {
    fn line(&mut self, line: &[u8], out: &mut Decoded) {
        self.line_number += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let object = match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => {
                out.push_back(Err(TransferError::Rejected(format!(
                    "line {} of the NDJSON event stream is not a JSON object",
                    self.line_number
                ))));
                return;
            }
        };
        let id = match object.get(&self.id_field) {
            Some(serde_json::Value::String(id)) if !id.is_empty() => Some(id.clone()),
            Some(serde_json::Value::Number(id)) => Some(id.to_string()),
            _ => None,
        };
        let mut chunk = Vec::with_capacity(line.len() + 1);
        chunk.extend_from_slice(line);
        chunk.push(b'\n');
        out.push_back(Ok(Event {
            chunk: Bytes::from(chunk),
            id,
        }));
    }
}

#[derive(Debug)]
enum Format {
    Sse(SseEvent),
    Ndjson(NdjsonEvent),
}

/// Decodes an event stream incrementally: [`Decoder::feed`] each network chunk as it arrives,
/// [`Decoder::finish`] at the end; both append the events completed to a queue.
#[derive(Debug)]
pub(crate) struct Decoder {
    lines: Lines,
    format: Format,
}

impl Decoder {
    /// A decoder of `text/event-stream`.
    pub(crate) fn sse() -> Self {
        Self {
            lines: Lines::new(true),
            format: Format::Sse(SseEvent::default()),
        }
    }

    /// A decoder of NDJSON whose events' ids are in the field `id_field`.
    pub(crate) fn ndjson(id_field: &str) -> Self {
        Self {
            lines: Lines::new(false),
            format: Format::Ndjson(NdjsonEvent {
                id_field: id_field.to_owned(),
                line_number: 0,
            }),
        }
    }

    /// Decodes the next chunk of the stream.
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Decoded) {
        let Self { lines, format } = self;
        let fed = match format {
            Format::Sse(event) => lines.feed(bytes, |line| event.line(line, out)),
            Format::Ndjson(event) => lines.feed(bytes, |line| event.line(line, out)),
        };
        if let Err(error) = fed {
            out.push_back(Err(error));
        }
    }

    /// Ends the stream: an NDJSON line without its final newline still counts; an unfinished
    /// server-sent event (no blank line after it) is dropped, as browsers do.
    pub(crate) fn finish(&mut self, out: &mut Decoded) {
        let rest = self.lines.rest();
        match &mut self.format {
            Format::Ndjson(event) => {
                if let Some(rest) = rest {
                    event.line(&rest, out);
                }
            }
            Format::Sse(event) => {
                if rest.is_some() || event.has_data {
                    tracing::debug!("the event stream ended inside an event: dropped");
                }
                *event = SseEvent::default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn decode_in_pieces(mut decoder: Decoder, input: &[u8], piece: usize) -> Vec<Event> {
        let mut out = Decoded::new();
        for part in input.chunks(piece.max(1)) {
            decoder.feed(part, &mut out);
        }
        decoder.finish(&mut out);
        out.into_iter().map(Result::unwrap).collect()
    }

    fn texts(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8(e.chunk.to_vec()).unwrap())
            .collect()
    }

    const SSE: &[u8] = b"\xEF\xBB\xBF: hello\r\n\r\nretry: 1000\nid: 1\ndata: one\n\nid:2\r\nevent: update\r\ndata: two a\r\ndata:two b\r\n\r\n: keep-alive\n\ndata: no id\rdata:\r\rid: 4\ndata: four\n\nid: 5\n\nid: 6\ndata: unfinished";

    #[test]
    fn server_sent_events_are_decoded_whatever_the_chunk_sizes() {
        let expected = vec![
            "id: 1\ndata: one\n\n".to_owned(),
            "id: 2\nevent: update\ndata: two a\ndata: two b\n\n".to_owned(),
            "data: no id\ndata: \n\n".to_owned(),
            "id: 4\ndata: four\n\n".to_owned(),
        ];
        for piece in 1..=SSE.len() {
            let events = decode_in_pieces(Decoder::sse(), SSE, piece);
            assert_eq!(texts(&events), expected, "pieces of {piece}");
            let ids: Vec<_> = events.iter().map(|e| e.id.as_deref()).collect();
            assert_eq!(ids, vec![Some("1"), Some("2"), None, Some("4")]);
        }
    }

    #[test]
    fn a_crlf_split_between_chunks_is_one_line_end() {
        let mut decoder = Decoder::sse();
        let mut out = Decoded::new();
        for part in [&b"data: a\r"[..], b"", b"\n", b"\r", b"\n", b"data: b\n\n"] {
            decoder.feed(part, &mut out);
        }
        let events: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(texts(&events), vec!["data: a\n\n", "data: b\n\n"]);
    }

    #[test]
    fn ndjson_lines_are_events() {
        let input = b"{\"id\":\"a\",\"v\":1}\r\n\n  \n{\"seq\":7,\"id\":\"b\"}\n{\"v\":3}";
        for piece in 1..=input.len() {
            let events = decode_in_pieces(Decoder::ndjson("id"), input, piece);
            assert_eq!(
                texts(&events),
                vec![
                    "{\"id\":\"a\",\"v\":1}\n",
                    "{\"seq\":7,\"id\":\"b\"}\n",
                    "{\"v\":3}\n"
                ]
            );
            let ids: Vec<_> = events.iter().map(|e| e.id.as_deref()).collect();
            assert_eq!(ids, vec![Some("a"), Some("b"), None]);
        }
        let events = decode_in_pieces(Decoder::ndjson("seq"), input, 5);
        let ids: Vec<_> = events.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(ids, vec![None, Some("7"), None]);
    }

    #[test]
    fn a_line_that_is_not_a_json_object_fails() {
        let mut decoder = Decoder::ndjson("id");
        let mut out = Decoded::new();
        decoder.feed(b"{\"id\":1}\n[1,2]\n", &mut out);
        assert!(out[0].is_ok());
        assert!(
            matches!(&out[1], Err(TransferError::Rejected(m)) if m.contains("line 2")),
            "{out:?}"
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut decoder = Decoder::sse();
        let mut out = Decoded::new();
        let piece = vec![b'x'; 1024 * 1024];
        for _ in 0..=MAX_EVENT_SIZE / piece.len() {
            decoder.feed(&piece, &mut out);
        }
        assert!(matches!(out.back(), Some(Err(TransferError::Rejected(_)))));
    }
}
