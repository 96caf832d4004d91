//! File-system data source and sink for the dpf data plane: address type
//! [`File`](dataplane_spi::FILE_TYPE), property `path`.
//!
//! - [`FileSourceFactory`] creates [`FileSource`]s. [`FileSource::open`] reads the file from a
//!   byte offset as a stream of chunks of at most [`CHUNK_SIZE`] bytes. The stream is a snapshot
//!   of the length seen at open time: it yields exactly `size - offset` bytes (a file that grows
//!   meanwhile is cut at that length; one that shrinks makes the stream fail).
//! - [`FileSinkFactory`] creates [`FileSink`]s. [`FileSink::write`] creates the parent
//!   directories, then either creates/truncates the file (`offset == 0`) or resumes it: the
//!   existing file is truncated to the offset and the stream is appended from there. Chunks are
//!   written as they arrive (never buffered whole), then the file is flushed and `fdatasync`ed
//!   before the byte count is returned.
//!
//! Errors: a missing or blank `path` is [`TransferError::InvalidAddress`]; a missing file, a
//! directory, a permission problem or an offset past the end of the file is
//! [`TransferError::Rejected`] (retrying will not help); any other I/O error is
//! [`TransferError::Transient`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), dataplane_spi::TransferError> {
//! use dataplane_spi::{DataSinkFactory, DataSourceFactory, ResourceAddress};
//! use transfer_fs::{FileSinkFactory, FileSourceFactory};
//!
//! let source = FileSourceFactory::new().create(&ResourceAddress::file("/data/in.bin"))?;
//! let sink = FileSinkFactory::new().create(&ResourceAddress::file("/data/out/copy.bin"))?;
//! let written = sink.write(source.open(0).await?).await?;
//! # let _ = written;
//! # Ok(())
//! # }
//! ```

use std::io::{self, ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use dataplane_spi::{
    ByteStream, DataSink, DataSinkFactory, DataSource, DataSourceFactory, ResourceAddress,
    SourceStream, TransferError, FILE_TYPE,
};
use futures::StreamExt;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

/// Largest chunk a [`FileSource`] yields, in bytes (64 KiB).
pub const CHUNK_SIZE: usize = 64 * 1024;

/// The `path` property of a `File` address.
pub const PATH_PROPERTY: &str = "path";

/// The optional `contentType` property of a `File` address, reported by the source as is.
pub const CONTENT_TYPE_PROPERTY: &str = "contentType";

/// Reads `path` from `address`: a non-blank string.
fn path_of(address: &ResourceAddress) -> Result<PathBuf, TransferError> {
    match address.get_value(PATH_PROPERTY) {
        None => Err(TransferError::InvalidAddress(format!(
            "a {FILE_TYPE} address needs a \"{PATH_PROPERTY}\""
        ))),
        Some(serde_value) => match serde_value.as_str() {
            Some(path) if !path.trim().is_empty() => Ok(PathBuf::from(path)),
            Some(_) => Err(TransferError::InvalidAddress(format!(
                "the \"{PATH_PROPERTY}\" of a {FILE_TYPE} address is blank"
            ))),
            None => Err(TransferError::InvalidAddress(format!(
                "the \"{PATH_PROPERTY}\" of a {FILE_TYPE} address must be a string"
            ))),
        },
    }
}

/// Translates an I/O error on `path` while doing `what`.
fn io_error(what: &str, path: &Path, error: &io::Error) -> TransferError {
    let message = format!("cannot {what} '{}': {error}", path.display());
    match error.kind() {
        ErrorKind::NotFound | ErrorKind::PermissionDenied => TransferError::Rejected(message),
        _ => TransferError::Transient(message),
    }
}

/// Creates [`FileSource`]s for `File` addresses.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileSourceFactory;

impl FileSourceFactory {
    /// The factory.
    pub fn new() -> Self {
        Self
    }
}

impl DataSourceFactory for FileSourceFactory {
    fn type_name(&self) -> &str {
        FILE_TYPE
    }

    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        let mut source = FileSource::new(path_of(address)?);
        source.content_type = address
            .get(CONTENT_TYPE_PROPERTY)
            .filter(|t| !t.trim().is_empty())
            .map(str::to_owned);
        Ok(Box::new(source))
    }
}

/// Creates [`FileSink`]s for `File` addresses.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileSinkFactory;

impl FileSinkFactory {
    /// The factory.
    pub fn new() -> Self {
        Self
    }
}

impl DataSinkFactory for FileSinkFactory {
    fn type_name(&self) -> &str {
        FILE_TYPE
    }

    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
        Ok(Box::new(FileSink::new(path_of(address)?)))
    }
}

/// A file to read.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    content_type: Option<String>,
}

impl FileSource {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            content_type: None,
        }
    }

    /// Reports `content_type` as the media type of the data.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl DataSource for FileSource {
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
        let path = &self.path;
        let mut file = File::open(path)
            .await
            .map_err(|e| io_error("open", path, &e))?;
        let metadata = file
            .metadata()
            .await
            .map_err(|e| io_error("read the metadata of", path, &e))?;
        if metadata.is_dir() {
            return Err(TransferError::Rejected(format!(
                "'{}' is a directory, not a file",
                path.display()
            )));
        }
        let size = metadata.len();
        if offset > size {
            return Err(TransferError::Rejected(format!(
                "cannot read '{}' from offset {offset}: the file has only {size} bytes",
                path.display()
            )));
        }
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .await
                .map_err(|e| io_error("seek in", path, &e))?;
        }
        tracing::debug!(path = %path.display(), offset, size, "file source opened");

        let expected = size - offset;
        let display = path.display().to_string();
        let chunks = ReaderStream::with_capacity(file.take(expected), CHUNK_SIZE)
            .map(move |chunk| {
                chunk.map_err(|e| TransferError::Transient(format!("cannot read '{display}': {e}")))
            })
            .boxed();
        // A file that shrank since it was opened ends early: report it instead of silently
        // yielding less than `size - offset`.
        let stream = check_length(chunks, expected, path.display().to_string());
        Ok(SourceStream {
            stream,
            size: Some(size),
            content_type: self.content_type.clone(),
            offset,
        })
    }
}

/// Fails `inner` (chunks of `path`) when it ends before yielding `expected` bytes.
fn check_length(inner: ByteStream, expected: u64, path: String) -> ByteStream {
    struct State {
        inner: ByteStream,
        seen: u64,
        done: bool,
        path: String,
    }
    let state = State {
        inner,
        seen: 0,
        done: false,
        path,
    };
    futures::stream::unfold(state, move |mut state| async move {
        if state.done {
            return None;
        }
        match state.inner.next().await {
            Some(Ok(bytes)) => {
                state.seen += bytes.len() as u64;
                Some((Ok(bytes), state))
            }
            Some(Err(e)) => {
                state.done = true;
                Some((Err(e), state))
            }
            None if state.seen < expected => {
                state.done = true;
                let error = TransferError::Transient(format!(
                    "'{}' ended after {} of {expected} bytes: it shrank while being read",
                    state.path, state.seen
                ));
                Some((Err(error), state))
            }
            None => None,
        }
    })
    .boxed()
}

/// A file to write.
#[derive(Debug, Clone)]
pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    /// A sink writing `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file for writing at `offset`: created/truncated at 0, else truncated to
    /// `offset` (which must not be past its end) and positioned there.
    async fn open_at(&self, offset: u64) -> Result<File, TransferError> {
        let path = &self.path;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error("create the directory", parent, &e))?;
        }
        if tokio::fs::metadata(path)
            .await
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            return Err(TransferError::Rejected(format!(
                "'{}' is a directory, not a file",
                path.display()
            )));
        }
        if offset == 0 {
            return OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .await
                .map_err(|e| io_error("create", path, &e));
        }
        let mut file = match OpenOptions::new().write(true).open(path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(TransferError::Rejected(format!(
                    "cannot resume '{}' at offset {offset}: the file does not exist",
                    path.display()
                )))
            }
            Err(e) => return Err(io_error("open", path, &e)),
        };
        let len = file
            .metadata()
            .await
            .map_err(|e| io_error("read the metadata of", path, &e))?
            .len();
        if len < offset {
            return Err(TransferError::Rejected(format!(
                "cannot resume '{}' at offset {offset}: the file has only {len} bytes",
                path.display()
            )));
        }
        file.set_len(offset)
            .await
            .map_err(|e| io_error("truncate", path, &e))?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| io_error("seek in", path, &e))?;
        Ok(file)
    }
}

#[async_trait]
impl DataSink for FileSink {
    async fn write(&self, input: SourceStream) -> Result<u64, TransferError> {
        let path = &self.path;
        let SourceStream {
            mut stream, offset, ..
        } = input;
        let mut file = self.open_at(offset).await?;
        let mut written = 0_u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    // Keep what was written so far, so that a resume finds it on disk.
                    let _ = file.flush().await;
                    return Err(e);
                }
            };
            file.write_all(&chunk)
                .await
                .map_err(|e| io_error("write", path, &e))?;
            written += chunk.len() as u64;
        }
        file.flush()
            .await
            .map_err(|e| io_error("write", path, &e))?;
        file.sync_data()
            .await
            .map_err(|e| io_error("sync", path, &e))?;
        tracing::debug!(path = %path.display(), offset, written, "file sink done");
        Ok(written)
    }

    /// A file resumes at the checkpoint (what was written after it is truncated by the next
    /// write), or at its length when it is shorter (0 when it does not exist).
    async fn resume_point(&self, checkpoint: u64) -> Result<Option<u64>, TransferError> {
        match tokio::fs::metadata(&self.path).await {
            Ok(meta) if meta.is_file() => Ok(Some(checkpoint.min(meta.len()))),
            Ok(_) => Err(TransferError::Rejected(format!(
                "'{}' is not a file",
                self.path.display()
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Some(0)),
            Err(e) => Err(io_error("read the metadata of", &self.path, &e)),
        }
    }
}
