#![allow(clippy::unwrap_used)]
//! Behaviour of the `File` source and sink.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use dataplane_spi::{
    DataSink, DataSinkFactory, DataSource, DataSourceFactory, ResourceAddress, SourceStream,
    TransferError, TransferRegistry, FILE_TYPE,
};
use futures::StreamExt;
use transfer_fs::{FileSinkFactory, FileSourceFactory, CHUNK_SIZE};

/// Deterministic pseudo-random bytes (splitmix64).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn source(path: &Path) -> Box<dyn DataSource> {
    FileSourceFactory::new()
        .create(&ResourceAddress::file(path.to_str().unwrap()))
        .unwrap()
}

fn sink(path: &Path) -> Box<dyn DataSink> {
    FileSinkFactory::new()
        .create(&ResourceAddress::file(path.to_str().unwrap()))
        .unwrap()
}

fn stream_of(chunks: Vec<Result<Bytes, TransferError>>, offset: u64) -> SourceStream {
    SourceStream {
        stream: futures::stream::iter(chunks).boxed(),
        size: None,
        content_type: None,
        offset,
    }
}

#[tokio::test]
async fn round_trip_of_a_multi_mib_file_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(5 * 1024 * 1024 + 123, 1);
    let input = dir.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    let output = dir.path().join("nested/deeper/out.bin");

    let opened = source(&input).open(0).await.unwrap();
    assert_eq!(opened.size, Some(data.len() as u64));
    assert_eq!(opened.offset, 0);
    let written = sink(&output).write(opened).await.unwrap();

    assert_eq!(written, data.len() as u64);
    assert!(std::fs::read(&output).unwrap() == data, "copy differs");
}

#[tokio::test]
async fn source_chunks_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(1024 * 1024 + 5, 2);
    let input = dir.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();

    let mut stream = source(&input).open(0).await.unwrap().stream;
    let mut total = 0;
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(
            !chunk.is_empty() && chunk.len() <= CHUNK_SIZE,
            "chunk of {}",
            chunk.len()
        );
        total += chunk.len();
        chunks += 1;
    }
    assert_eq!(total, data.len());
    assert!(chunks >= data.len() / CHUNK_SIZE);
}

#[tokio::test]
async fn resume_at_an_offset_gives_an_identical_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3 * 1024 * 1024 + 77, 3);
    let input = dir.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    let offset = 1024 * 1024 + 11;

    // An interrupted earlier attempt: the first `offset` bytes are right, then some garbage that
    // was written but never acknowledged.
    let output = dir.path().join("out.bin");
    let mut partial = data[..offset].to_vec();
    partial.extend_from_slice(&[0xAA; 5000]);
    std::fs::write(&output, &partial).unwrap();

    let opened = source(&input).open(offset as u64).await.unwrap();
    assert_eq!(opened.offset, offset as u64);
    assert_eq!(opened.size, Some(data.len() as u64));
    let written = sink(&output).write(opened).await.unwrap();

    assert_eq!(written, (data.len() - offset) as u64);
    assert!(
        std::fs::read(&output).unwrap() == data,
        "resumed copy differs"
    );
}

#[tokio::test]
async fn offset_zero_truncates_an_existing_longer_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.bin");
    std::fs::write(&output, vec![7_u8; 10_000]).unwrap();

    let written = sink(&output)
        .write(stream_of(vec![Ok(Bytes::from_static(b"hello"))], 0))
        .await
        .unwrap();

    assert_eq!(written, 5);
    assert_eq!(std::fs::read(&output).unwrap(), b"hello");
}

#[tokio::test]
async fn offset_at_the_end_yields_nothing_and_past_the_end_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    std::fs::write(&input, b"0123456789").unwrap();

    let opened = source(&input).open(10).await.unwrap();
    assert_eq!((opened.offset, opened.size), (10, Some(10)));
    assert_eq!(opened.stream.count().await, 0);

    let err = source(&input).open(11).await.unwrap_err();
    assert!(
        matches!(&err, TransferError::Rejected(m) if m.contains("offset 11")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn missing_file_is_rejected_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file.bin");

    let err = source(&missing).open(0).await.unwrap_err();

    assert!(
        matches!(&err, TransferError::Rejected(m) if m.contains("no-such-file.bin")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_directory_is_rejected_as_source_and_sink() {
    let dir = tempfile::tempdir().unwrap();
    let err = source(dir.path()).open(0).await.unwrap_err();
    assert!(matches!(err, TransferError::Rejected(_)), "{err:?}");
    let err = sink(dir.path())
        .write(stream_of(vec![], 0))
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Rejected(_)), "{err:?}");
}

#[tokio::test]
async fn resuming_a_missing_or_short_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.bin");

    let err = sink(&output)
        .write(stream_of(vec![Ok(Bytes::from_static(b"x"))], 5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Rejected(m) if m.contains("does not exist")),
        "{err:?}"
    );

    std::fs::write(&output, b"abc").unwrap();
    let err = sink(&output)
        .write(stream_of(vec![Ok(Bytes::from_static(b"x"))], 5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Rejected(m) if m.contains("only 3 bytes")),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&output).unwrap(), b"abc", "left untouched");
}

#[tokio::test]
async fn an_input_error_is_returned_as_is_and_earlier_bytes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.bin");
    let input = stream_of(
        vec![
            Ok(Bytes::from_static(b"first")),
            Err(TransferError::Transient("source broke".into())),
            Ok(Bytes::from_static(b"never")),
        ],
        0,
    );

    let err = sink(&output).write(input).await.unwrap_err();

    assert_eq!(err, TransferError::Transient("source broke".into()));
    assert_eq!(std::fs::read(&output).unwrap(), b"first");
}

#[test]
fn missing_or_blank_path_is_an_invalid_address() {
    let no_path = ResourceAddress::new(FILE_TYPE);
    let blank = ResourceAddress::file("   ");
    let not_a_string =
        ResourceAddress::from_json(serde_json::json!({"type": "File", "path": 42})).unwrap();
    for address in [&no_path, &blank, &not_a_string] {
        let err = FileSourceFactory::new().create(address).unwrap_err();
        assert!(matches!(err, TransferError::InvalidAddress(_)), "{err:?}");
        let err = FileSinkFactory::new().create(address).unwrap_err();
        assert!(matches!(err, TransferError::InvalidAddress(_)), "{err:?}");
    }
}

#[tokio::test]
async fn works_through_a_registry_and_reports_the_content_type() {
    let registry = TransferRegistry::builder()
        .source(Arc::new(FileSourceFactory::new()))
        .unwrap()
        .sink(Arc::new(FileSinkFactory::new()))
        .unwrap()
        .build();
    assert_eq!(registry.source_types(), vec![FILE_TYPE.to_owned()]);
    assert_eq!(registry.sink_types(), vec![FILE_TYPE.to_owned()]);

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, b"a,b\n1,2\n").unwrap();
    let mut address = ResourceAddress::file(input.to_str().unwrap());
    address.set("contentType", "text/csv");
    let output = dir.path().join("out.csv");

    let opened = registry.source(&address).unwrap().open(0).await.unwrap();
    assert_eq!(opened.content_type.as_deref(), Some("text/csv"));
    let written = registry
        .sink(&ResourceAddress::file(output.to_str().unwrap()))
        .unwrap()
        .write(opened)
        .await
        .unwrap();
    assert_eq!(written, 8);
    assert_eq!(std::fs::read(&output).unwrap(), b"a,b\n1,2\n");
}

#[tokio::test]
async fn a_file_that_shrinks_while_read_fails_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    std::fs::write(&input, random_bytes(300_000, 4)).unwrap();

    let opened = source(&input).open(0).await.unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let results: Vec<_> = opened.stream.collect().await;

    let err = results.last().unwrap().clone().unwrap_err();
    assert!(
        matches!(&err, TransferError::Transient(m) if m.contains("shrank")),
        "{err:?}"
    );
}

/// Beneath a policy's root: `..` and absolute paths outside it are invalid addresses, and a
/// link planted after the sink was created cannot lead the write out of the root.
#[tokio::test]
async fn files_stay_beneath_the_policy_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let policy = transfer_fs::AddressPolicy::builder()
        .file_root(&root)
        .build()
        .unwrap();
    let sinks = FileSinkFactory::with_policy(policy.clone());
    let sources = FileSourceFactory::with_policy(policy);
    for escape in ["../x", "/etc/passwd", "a/../../x"] {
        assert!(matches!(
            sinks.create(&ResourceAddress::file(escape)),
            Err(TransferError::InvalidAddress(_))
        ));
        assert!(matches!(
            sources.create(&ResourceAddress::file(escape)),
            Err(TransferError::InvalidAddress(_))
        ));
    }

    // Relative to the root.
    let written = sinks
        .create(&ResourceAddress::file("in/a.bin"))
        .unwrap()
        .write(stream_of(vec![Ok(Bytes::from_static(b"abc"))], 0))
        .await
        .unwrap();
    assert_eq!(written, 3);
    assert_eq!(std::fs::read(root.join("in/a.bin")).unwrap(), b"abc");

    // Planted after the check: the capability still refuses to follow it out.
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let late = sinks.create(&ResourceAddress::file("late/x.bin")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("late")).unwrap();
    let result = late
        .write(stream_of(vec![Ok(Bytes::from_static(b"evil"))], 0))
        .await;
    assert!(result.is_err(), "wrote through a planted link");
    assert!(!outside.join("x.bin").exists());
}
