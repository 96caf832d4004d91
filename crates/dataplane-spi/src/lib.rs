//! Service-provider interface of the dpf data plane.
//!
//! - [`DataFlow`], [`NewDataFlow`], [`DataFlowState`] (the DPS states plus the internal
//!   `SUSPENDING` and `TERMINATING`), [`FlowKind`], [`Checkpoint`];
//! - [`Member`]: a data-plane replica (stable name = runtime id, fresh incarnation per start,
//!   lease on the store's clock);
//! - [`DataFlowStore`]: persistence of flows and members, including the clustering statements —
//!   claim, per-replica lease renewal, takeover with epoch bump, fenced owner writes;
//! - [`StoreError`] with [`StoreError::LeaseLost`] for fenced writes that lost ownership;
//! - DPS messages ([`DataFlowMessage`], [`DataFlowStatusMessage`], ...) and [`DataAddress`];
//! - [`ResourceAddress`], [`DataSource`]/[`DataSink`] streaming traits and their factories in a
//!   [`TransferRegistry`] keyed by address type;
//! - `conformance` (feature `conformance`): the behaviour every store must have, one file per
//!   contract, run against `MemoryStore` (`dataplane-store-memory`) and `SqlStore`
//!   (`dataplane-store-sql`).
//!
//! Contracts only: the implementations live in the store crates.
//!
//! No web, HTTP-client or database crate is used here.

mod address;
pub mod coordination;
mod error;
mod flow;
mod member;
mod messages;
pub mod secrets;
mod store;
mod transfer;

#[cfg(any(test, feature = "conformance"))]
#[allow(clippy::unwrap_used)] // a test suite: a failed unwrap is a failed case
pub mod conformance;

pub use address::{
    has_scheme, DataAddress, EndpointProperty, ResourceAddress, FILE_TYPE, HTTP_DATA_TYPE,
    HTTP_PULL, HTTP_PUSH,
};
pub use coordination::{
    CoordinationError, CoordinationResult, Coordinator, Expected, KvEntry, KvEvent, KvEventKind,
    Leader, Session,
};
pub use error::{StoreError, StoreResult};
pub use flow::{Checkpoint, DataFlow, DataFlowState, FlowKind, FlowUpdate, NewDataFlow};
pub use member::{LoadReport, Member, MemberLoad, MemberLoads, MemberRegistration};
pub use messages::{
    ControlPlaneRegistration, DataFlowAddressMessage, DataFlowMessage, DataFlowReasonMessage,
    DataFlowStatusMessage, DataFlowStatusResponseMessage,
};
pub use store::{DataFlowStore, FlowOwner};
pub use transfer::{
    ByteStream, DataSink, DataSinkFactory, DataSource, DataSourceFactory, SourceStream,
    TransferError, TransferRegistry, TransferRegistryBuilder,
};
