//! An incremental parser of server-sent events (the `text/event-stream` format of the HTML
//! standard): feed it the body's chunks as they arrive, get back the complete events.

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last `id:` seen on the stream so far, if any.
    pub id: Option<String>,
}

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous line ended with `\r`: a `\n` right after it belongs to that line end.
    after_cr: bool,
    event: String,
    data: Option<String>,
    id: Option<String>,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `chunk`, returning the events it completed (an event is complete at the empty
    /// line that ends it; the rest waits for the next chunk).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &byte in chunk {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\n' => self.end_line(&mut events),
                b'\r' => {
                    self.end_line(&mut events);
                    self.after_cr = true;
                }
                other => self.line.push(other),
            }
        }
        events
    }

    fn end_line(&mut self, events: &mut Vec<Event>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if let Some(data) = self.data.take() {
                events.push(Event {
                    event: if event.is_empty() {
                        "message".to_owned()
                    } else {
                        event
                    },
                    data,
                    id: self.id.clone(),
                });
            }
            return;
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return; // a comment (keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {} // `retry` and unknown fields
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, data: &str, id: Option<&str>) -> Event {
        Event {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn events_are_parsed_across_chunks() {
        let stream = "id: 1\nevent: PUT\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: join\r\n\
                      data: x\r\ndata:y\r\rdata: plain\n\n";
        let expected = vec![
            event("PUT", "{\"a\":1}", Some("1")),
            event("join", "x\ny", Some("1")),
            event("message", "plain", Some("1")),
        ];
        // Whole, and cut at every possible place.
        assert_eq!(Parser::new().push(stream.as_bytes()), expected);
        for cut in 0..stream.len() {
            let mut parser = Parser::new();
            let mut events = parser.push(&stream.as_bytes()[..cut]);
            events.extend(parser.push(&stream.as_bytes()[cut..]));
            assert_eq!(events, expected, "cut at {cut}");
        }
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        let mut parser = Parser::new();
        assert!(parser.push(b"id: 7\nevent: PUT\ndata: {}\n").is_empty());
        assert_eq!(parser.push(b"\n"), vec![event("PUT", "{}", Some("7"))]);
        let mut parser = Parser::new();
        assert!(parser.push(b"event: only-a-type\n\n").is_empty());
    }
}
