//! Logs on stderr: text or JSON, tagged with the runtime id, secrets masked.

use std::sync::Arc;

use dpf_config::Config;

/// Text or JSON logs on stderr, filtered by `RUST_LOG` or `dpf.log.level`. Every line carries
/// the process's runtime id (`edc.runtime.id`, else `default_runtime`): text lines start with
/// `runtime=ID`, JSON objects have a `runtimeId` field. Flow and process ids are fields of the
/// events that concern a flow. No line shows a secret: the values of secret configuration keys
/// and the passwords of URLs are masked (`dpf_config::mask_secrets`).
pub fn init_logging(config: &Config, default_runtime: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(config.get_or("dpf.log.level", "info"))
    });
    use std::io::IsTerminal;
    let runtime = config.get_or("edc.runtime.id", default_runtime).to_owned();
    let writer = RedactingStderr::new(config.secret_values());
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    if config.get_or("dpf.log.format", "text") == "json" {
        let format = tracing_subscriber::fmt::format().json();
        builder
            .event_format(RuntimeTagged::json(runtime, format))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .init();
    } else {
        let format = tracing_subscriber::fmt::format();
        builder
            .event_format(RuntimeTagged::text(runtime, format))
            .init();
    }
}

/// Adds the runtime id to every event an inner formatter writes.
struct RuntimeTagged<F> {
    inner: F,
    /// Text: `runtime=ID `. JSON: `"runtimeId":"ID",` (inserted after the opening brace).
    tag: String,
    json: bool,
}

impl<F> RuntimeTagged<F> {
    fn text(runtime: String, inner: F) -> Self {
        Self {
            inner,
            tag: format!("runtime={runtime} "),
            json: false,
        }
    }

    fn json(runtime: String, inner: F) -> Self {
        let value = serde_json::Value::String(runtime);
        Self {
            inner,
            tag: format!("\"runtimeId\":{value},"),
            json: true,
        }
    }
}

/// Standard error, with every line passed through `dpf_config::mask_secrets` first: the fmt
/// layer writes each event with one `write_all`, so each write is one whole line.
#[derive(Debug, Clone)]
pub struct RedactingStderr {
    secrets: Arc<Vec<String>>,
}

impl RedactingStderr {
    /// Masks `secrets` (and URL passwords) in everything written.
    pub fn new(secrets: Vec<String>) -> Self {
        Self {
            secrets: Arc::new(secrets),
        }
    }

    /// `line` as it would be written.
    pub fn mask(&self, line: &str) -> String {
        dpf_config::mask_secrets(line, &self.secrets)
    }
}

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(self.mask(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for RuntimeTagged<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if !self.json {
            writer.write_str(&self.tag)?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        match line.strip_prefix('{') {
            Some(rest) => {
                writer.write_char('{')?;
                writer.write_str(&self.tag)?;
                writer.write_str(rest)
            }
            None => writer.write_str(&line),
        }
    }
}
