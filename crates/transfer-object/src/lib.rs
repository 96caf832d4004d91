//! Object-storage data sources and sinks for the dpf data plane, on Apache Arrow's
//! [`object_store`]: address types [`S3_TYPE`] (`AmazonS3`) and [`AZURE_TYPE`]
//! (`AzureStorage`), with the property names of EDC's Technology-Aws and Technology-Azure
//! data-plane modules, so existing assets and control planes work unchanged. See
//! `docs/object-storage.md` for the property tables.
//!
//! - **Sources** ([`ObjectSourceFactory`]) read one object (`keyName`/`blobName`) by byte
//!   ranges of [`ObjectOptions::range_size`], [`ObjectOptions::read_parallelism`] at a time
//!   (bounded memory: at most `parallelism × range_size` bytes are buffered), from any byte
//!   offset. A prefix (`keyPrefix`/`blobPrefix`) is read as a **ustar archive** of every object
//!   under it (sorted by key; names relative to the prefix's last `/`), resumable from any
//!   offset (the listing is taken again and must be unchanged).
//! - **Sinks** ([`ObjectSinkFactory`]) write one object as a multipart upload (S3
//!   `CreateMultipartUpload`/`UploadPart`/`CompleteMultipartUpload`, Azure blocks and a block
//!   list) in parts of [`ObjectOptions::part_size`], at most [`ObjectOptions::parts_in_flight`]
//!   at once. The upload id and the acknowledged parts are the sink's state
//!   ([`DataSink::state`](dataplane_spi::DataSink::state)), recorded with every checkpoint
//!   (fenced by the owner's epoch): a replica that takes the flow over continues the same
//!   upload from the next part. A terminated or failed flow aborts its upload
//!   ([`DataSink::abort`](dataplane_spi::DataSink::abort)). A prefix destination unpacks the
//!   archive a prefix source produces, one object per entry, resuming at the first object not
//!   yet completed.
//!
//! Every connection goes through the data plane's [`AddressPolicy`]: an `endpointOverride` is
//! checked with [`AddressPolicy::check_url`] when the address is accepted, and object_store's
//! HTTP client is the policy's ([`AddressPolicy::client_builder`]: policy DNS resolver, no
//! redirects, no environment proxies), which checks every request URL again (IP literals,
//! instance-metadata endpoints of the default credential chains).
//!
//! Errors: a missing bucket/container/key property, an endpoint the policy refuses, or half a
//! credential pair is [`TransferError::InvalidAddress`]; a missing bucket or object, wrong
//! credentials (HTTP 401/403) or any other 4xx is [`TransferError::Rejected`]; 5xx and
//! connection errors are [`TransferError::Transient`].
//!
//! [`TransferError::InvalidAddress`]: dataplane_spi::TransferError::InvalidAddress
//! [`TransferError::Rejected`]: dataplane_spi::TransferError::Rejected
//! [`TransferError::Transient`]: dataplane_spi::TransferError::Transient

mod address;
mod connector;
mod errors;
mod prefix_sink;
mod sink;
mod source;
mod staged;
mod tar;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use address::{AZURE_TYPE, S3_TYPE};
pub use address_policy::AddressPolicy;
use dataplane_spi::{
    DataSink, DataSinkFactory, DataSource, DataSourceFactory, ResourceAddress, TransferError,
};

/// Default part size of multipart uploads (16 MiB), `dpf.object.part-size`.
pub const DEFAULT_PART_SIZE: u64 = 16 * 1024 * 1024;
/// Smallest part size S3 accepts for every part but the last (5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part size S3 accepts (5 GiB).
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Default number of parallel range reads of a source, `dpf.object.read-parallelism`.
pub const DEFAULT_READ_PARALLELISM: usize = 4;
/// Default number of parts uploaded at once, `dpf.object.parts-in-flight`.
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 2;
/// Size of one range read (8 MiB).
pub const DEFAULT_RANGE_SIZE: u64 = 8 * 1024 * 1024;

/// Tuning of object transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectOptions {
    /// Bytes per uploaded part (every part but the last); at least [`MIN_PART_SIZE`].
    pub part_size: u64,
    /// Parts uploaded at once (memory: about `(parts_in_flight + 1) × part_size`).
    pub parts_in_flight: usize,
    /// Range reads of a source at once (memory: `read_parallelism × range_size`).
    pub read_parallelism: usize,
    /// Bytes per range read.
    pub range_size: u64,
}

impl Default for ObjectOptions {
    fn default() -> Self {
        Self {
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            read_parallelism: DEFAULT_READ_PARALLELISM,
            range_size: DEFAULT_RANGE_SIZE,
        }
    }
}

impl ObjectOptions {
    /// Checks the values.
    ///
    /// # Errors
    /// What is out of range.
    pub fn validated(self) -> Result<Self, String> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(format!(
                "dpf.object.part-size must lie between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes (S3's limits), not {}",
                self.part_size
            ));
        }
        if self.parts_in_flight == 0 || self.read_parallelism == 0 || self.range_size == 0 {
            return Err(
                "dpf.object.parts-in-flight, dpf.object.read-parallelism and the range size must be at least 1"
                    .into(),
            );
        }
        Ok(self)
    }
}

/// What both factories hold: the address type, the policy that checks connections, the tuning.
#[derive(Debug, Clone)]
struct Setup {
    type_name: &'static str,
    policy: AddressPolicy,
    options: ObjectOptions,
}

impl Setup {
    fn target(
        &self,
        address: &ResourceAddress,
        role: address::Role,
    ) -> Result<address::Target, TransferError> {
        address::Target::parse(address, &self.policy, role)
    }
}

/// Creates sources for `AmazonS3` or `AzureStorage` addresses.
#[derive(Debug, Clone)]
pub struct ObjectSourceFactory(Setup);

impl ObjectSourceFactory {
    /// Sources of `type_name` ([`S3_TYPE`] or [`AZURE_TYPE`]) whose connections `policy` checks.
    pub fn new(type_name: &'static str, policy: AddressPolicy, options: ObjectOptions) -> Self {
        Self(Setup {
            type_name,
            policy,
            options,
        })
    }
}

impl DataSourceFactory for ObjectSourceFactory {
    fn type_name(&self) -> &str {
        self.0.type_name
    }

    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        let target = self.0.target(address, address::Role::Source)?;
        Ok(Box::new(source::ObjectSource::new(target, self.0.options)))
    }
}

/// Creates sinks for `AmazonS3` or `AzureStorage` addresses.
#[derive(Debug, Clone)]
pub struct ObjectSinkFactory(Setup);

impl ObjectSinkFactory {
    /// Sinks of `type_name` ([`S3_TYPE`] or [`AZURE_TYPE`]) whose connections `policy` checks.
    pub fn new(type_name: &'static str, policy: AddressPolicy, options: ObjectOptions) -> Self {
        Self(ObjectSourceFactory::new(type_name, policy, options).0)
    }
}

impl DataSinkFactory for ObjectSinkFactory {
    fn type_name(&self) -> &str {
        self.0.type_name
    }

    fn create(&self, address: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
        let target = self.0.target(address, address::Role::Sink)?;
        let options = self.0.options;
        Ok(match target.selection.clone() {
            address::Selection::Key(key) => Box::new(sink::ObjectSink::new(target, key, options)),
            address::Selection::Prefix(prefix) => {
                Box::new(prefix_sink::PrefixSink::new(target, prefix, options))
            }
        })
    }
}

/// The source factories of both address types.
pub fn source_factories(
    policy: &AddressPolicy,
    options: ObjectOptions,
) -> Vec<Arc<dyn DataSourceFactory>> {
    [S3_TYPE, AZURE_TYPE]
        .into_iter()
        .map(|t| {
            Arc::new(ObjectSourceFactory::new(t, policy.clone(), options))
                as Arc<dyn DataSourceFactory>
        })
        .collect()
}

/// The sink factories of both address types.
pub fn sink_factories(
    policy: &AddressPolicy,
    options: ObjectOptions,
) -> Vec<Arc<dyn DataSinkFactory>> {
    [S3_TYPE, AZURE_TYPE]
        .into_iter()
        .map(|t| {
            Arc::new(ObjectSinkFactory::new(t, policy.clone(), options)) as Arc<dyn DataSinkFactory>
        })
        .collect()
}

/// Adds the source and sink factories of both address types to `builder`.
///
/// # Errors
/// A message when one of the types is registered already.
pub fn register(
    builder: dataplane_spi::TransferRegistryBuilder,
    policy: &AddressPolicy,
    options: ObjectOptions,
) -> Result<dataplane_spi::TransferRegistryBuilder, String> {
    let mut builder = builder;
    for factory in source_factories(policy, options) {
        builder = builder.source(factory)?;
    }
    for factory in sink_factories(policy, options) {
        builder = builder.sink(factory)?;
    }
    Ok(builder)
}
