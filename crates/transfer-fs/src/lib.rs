//! File-system data source and sink for the dpf data plane: address type
//! [`File`](dataplane_spi::FILE_TYPE), property `path`.
//!
//! Every path goes through the data plane's [`AddressPolicy`]: it resolves beneath the policy's
//! file root (`dpf.transfer.file.root`), and files are opened through the root's directory
//! capability, so neither `..` nor a symbolic link can lead a read or a write out of it
//! ([`FileSourceFactory::with_policy`], [`FileSinkFactory::with_policy`]). The `new()`
//! factories use [`AddressPolicy::unrestricted`] (root `/`), for tests and embedding programs.
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
//! Errors: a missing or blank `path`, or one the policy refuses, is
//! [`TransferError::InvalidAddress`]; a missing file, a
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

pub use address_policy::AddressPolicy;

use async_trait::async_trait;
use dataplane_spi::{
    ByteStream, DataSink, DataSinkFactory, DataSource, DataSourceFactory, ResourceAddress,
    SourceStream, TransferError, FILE_TYPE,
};
use futures::StreamExt;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

/// Largest chunk a [`FileSource`] yields, in bytes (256 KiB: fewer blocking-pool hops per
/// mebibyte than 64 KiB, about 30 % more file → file throughput in the benchmark suite, still a
/// small bounded buffer per flow).
pub const CHUNK_SIZE: usize = 256 * 1024;

/// The `path` property of a `File` address.
pub const PATH_PROPERTY: &str = "path";

/// The optional `contentType` property of a `File` address, reported by the source as is.
pub const CONTENT_TYPE_PROPERTY: &str = "contentType";

/// Reads `path` from `address` (a non-blank string) and checks it against `policy`.
fn located(policy: &AddressPolicy, address: &ResourceAddress) -> Result<Located, TransferError> {
    let path = path_of(address)?;
    let relative = policy
        .check_file(&path.to_string_lossy())
        .map_err(|e| TransferError::InvalidAddress(e.to_string()))?;
    Ok(Located {
        policy: policy.clone(),
        relative,
        shown: path,
    })
}

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

/// A file beneath a policy's root: the path relative to the root, and the path as the
/// address gave it (for messages).
#[derive(Debug, Clone)]
struct Located {
    policy: AddressPolicy,
    relative: PathBuf,
    shown: PathBuf,
}

impl Located {
    fn unrestricted(path: PathBuf) -> Self {
        let policy = AddressPolicy::unrestricted();
        // Unrestricted: every path is accepted; one the policy cannot normalise (e.g. with
        // `..`) is opened as given, absolute, beneath `/`.
        let relative = policy
            .check_file(&path.to_string_lossy())
            .unwrap_or_else(|_| {
                std::path::absolute(&path)
                    .unwrap_or_else(|_| path.clone())
                    .strip_prefix("/")
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| path.clone())
            });
        Self {
            policy,
            relative,
            shown: path,
        }
    }

    /// Runs `f` on the root capability and the relative path, off the runtime threads.
    async fn with_root<T: Send + 'static>(
        &self,
        f: impl FnOnce(&cap_std::fs::Dir, &Path) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let policy = self.policy.clone();
        let relative = self.relative.clone();
        tokio::task::spawn_blocking(move || {
            let root = policy.open_root()?;
            f(&root, &relative)
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Creates [`FileSource`]s for `File` addresses.
#[derive(Debug, Clone)]
pub struct FileSourceFactory {
    policy: AddressPolicy,
}

impl Default for FileSourceFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl FileSourceFactory {
    /// A factory for files anywhere ([`AddressPolicy::unrestricted`]).
    pub fn new() -> Self {
        Self::with_policy(AddressPolicy::unrestricted())
    }

    /// A factory for files beneath `policy`'s root.
    pub fn with_policy(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

impl DataSourceFactory for FileSourceFactory {
    fn type_name(&self) -> &str {
        FILE_TYPE
    }

    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        let mut source = FileSource {
            file: located(&self.policy, address)?,
            content_type: None,
        };
        source.content_type = address
            .get(CONTENT_TYPE_PROPERTY)
            .filter(|t| !t.trim().is_empty())
            .map(str::to_owned);
        Ok(Box::new(source))
    }
}

/// Creates [`FileSink`]s for `File` addresses.
#[derive(Debug, Clone)]
pub struct FileSinkFactory {
    policy: AddressPolicy,
}

impl Default for FileSinkFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl FileSinkFactory {
    /// A factory for files anywhere ([`AddressPolicy::unrestricted`]).
    pub fn new() -> Self {
        Self::with_policy(AddressPolicy::unrestricted())
    }

    /// A factory for files beneath `policy`'s root.
    pub fn with_policy(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

impl DataSinkFactory for FileSinkFactory {
    fn type_name(&self) -> &str {
        FILE_TYPE
    }

    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
        Ok(Box::new(FileSink {
            file: located(&self.policy, address)?,
        }))
    }
}

/// A file to read.
#[derive(Debug, Clone)]
pub struct FileSource {
    file: Located,
    content_type: Option<String>,
}

impl FileSource {
    /// A source reading `path` (anywhere: [`AddressPolicy::unrestricted`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            file: Located::unrestricted(path.into()),
            content_type: None,
        }
    }

    /// Reports `content_type` as the media type of the data.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// The file, as its address names it.
    pub fn path(&self) -> &Path {
        &self.file.shown
    }
}

#[async_trait]
impl DataSource for FileSource {
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
        let path = &self.file.shown;
        let mut file = self
            .file
            .with_root(|root, relative| root.open(relative))
            .await
            .map(|f| File::from_std(f.into_std()))
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
    file: Located,
}

impl FileSink {
    /// A sink writing `path` (anywhere: [`AddressPolicy::unrestricted`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            file: Located::unrestricted(path.into()),
        }
    }

    /// The file, as its address names it.
    pub fn path(&self) -> &Path {
        &self.file.shown
    }

    /// Opens the file for writing at `offset`: created/truncated at 0, else truncated to
    /// `offset` (which must not be past its end) and positioned there.
    async fn open_at(&self, offset: u64) -> Result<File, TransferError> {
        let path = &self.file.shown;
        let opened = self
            .file
            .with_root(move |root, relative| {
                if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
                    root.create_dir_all(parent).map_err(|e| {
                        io::Error::new(e.kind(), format!("create the directory: {e}"))
                    })?;
                }
                if root.metadata(relative).map(|m| m.is_dir()).unwrap_or(false) {
                    return Ok(Err(()));
                }
                let mut options = cap_std::fs::OpenOptions::new();
                options.write(true);
                if offset == 0 {
                    options.create(true).truncate(true);
                }
                #[cfg(unix)]
                cap_std::fs::OpenOptionsExt::mode(&mut options, 0o600);
                root.open_with(relative, &options).map(Ok)
            })
            .await;
        let mut file = match opened {
            Ok(Ok(file)) => File::from_std(file.into_std()),
            Ok(Err(())) => {
                return Err(TransferError::Rejected(format!(
                    "'{}' is a directory, not a file",
                    path.display()
                )))
            }
            Err(e) if e.kind() == ErrorKind::NotFound && offset > 0 => {
                return Err(TransferError::Rejected(format!(
                    "cannot resume '{}' at offset {offset}: the file does not exist",
                    path.display()
                )))
            }
            Err(e) => {
                return Err(io_error(
                    if offset == 0 { "create" } else { "open" },
                    path,
                    &e,
                ))
            }
        };
        if offset == 0 {
            return Ok(file);
        }
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
        let path = &self.file.shown;
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
        match self
            .file
            .with_root(|root, relative| root.metadata(relative))
            .await
        {
            Ok(meta) if meta.is_file() => Ok(Some(checkpoint.min(meta.len()))),
            Ok(_) => Err(TransferError::Rejected(format!(
                "'{}' is not a file",
                self.file.shown.display()
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Some(0)),
            Err(e) => Err(io_error("read the metadata of", &self.file.shown, &e)),
        }
    }
}
