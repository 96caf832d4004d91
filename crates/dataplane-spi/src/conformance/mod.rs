//! The behaviour every store must have, as one suite run against each implementation
//! (`MemoryStore` in `dataplane-store-memory`; SQLite and PostgreSQL in `dataplane-store-sql`).
//!
//! One file per contract:
//!
//! | file | cases for |
//! |---|---|
//! | [`flows`] | [`DataFlowStore`]'s flows: create/find/list, claims, fenced owner writes, checkpoints, transitions |
//! | [`members`] | [`DataFlowStore`]'s members: registration, renewal, fencing of expired incarnations, takeover, release |
//! | [`kv`] | [`Coordinator`]'s key-value store: compare-and-set, list and watch, session-bound keys |
//! | [`leader`] | [`Coordinator`]'s leader election: terms, stale terms refused, leader duties |
//!
//! Use [`data_flow_store_conformance!`](crate::data_flow_store_conformance) with an async
//! expression yielding a fresh, empty `Arc<dyn DataFlowStore>`, and
//! [`coordinator_conformance!`](crate::coordinator_conformance) with one yielding a fresh, empty
//! `Arc<impl ClusterStore>`.

use std::time::Duration;

use crate::{
    Coordinator, DataFlowState, DataFlowStore, FlowOwner, MemberRegistration, NewDataFlow,
};

pub mod flows;
pub mod kv;
pub mod leader;
pub mod members;

/// A store that is both a [`DataFlowStore`] and a [`Coordinator`] (sessions are its members), as
/// every backend is.
pub trait ClusterStore: DataFlowStore + Coordinator {}

impl<T: DataFlowStore + Coordinator> ClusterStore for T {}

const LONG_LEASE_MS: i64 = 60_000;
const SHORT_LEASE_MS: i64 = 50;
/// Long enough for a [`SHORT_LEASE_MS`] lease to have expired on any store clock.
const AFTER_SHORT_LEASE: Duration = Duration::from_millis(150);

fn member(name: &str, incarnation: &str, lease_ms: i64) -> MemberRegistration {
    MemberRegistration {
        runtime_id: name.to_owned(),
        incarnation: incarnation.to_owned(),
        lease_ms,
        state: "HEALTHY".to_owned(),
    }
}

fn session(name: &str) -> crate::Session {
    crate::Session {
        runtime_id: name.into(),
        incarnation: "i".into(),
    }
}

fn flow(id: &str, state: DataFlowState) -> NewDataFlow {
    NewDataFlow::new(
        id,
        format!("process-{id}"),
        crate::FlowKind::ProviderPush,
        state,
    )
}

fn owner(runtime_id: &str, epoch: i64) -> FlowOwner {
    FlowOwner {
        runtime_id: runtime_id.to_owned(),
        epoch,
    }
}

fn ids(flows: &[crate::DataFlow]) -> Vec<String> {
    flows.iter().map(|f| f.id.clone()).collect()
}

/// Generates one `#[tokio::test]` per flow and member conformance case. `$factory` is an async
/// expression evaluating to a fresh, empty `Arc<dyn DataFlowStore>`.
#[macro_export]
macro_rules! data_flow_store_conformance {
    ($factory:expr) => {
        $crate::conformance_cases!($factory; flows;
            create_find_and_unique_keys,
            claim_takes_unowned_flows_with_epoch_bump,
            fenced_updates_report_lease_lost,
            checkpoints_only_move_forward,
            concurrent_claims_never_overlap,
            transitions_are_conditional,
            owner_writes_respect_states,
        );
        $crate::conformance_cases!($factory; members;
            members_register_renew_and_refuse_live_duplicates,
            expired_member_is_fenced_and_replaced,
            take_over_only_flows_of_dead_owners,
            remove_member_and_release_free_flows,
        );
    };
}

/// Generates one `#[tokio::test]` per key-value and leader-election conformance case.
/// `$factory` is an async expression evaluating to a fresh, empty `Arc<impl ClusterStore>`.
#[macro_export]
macro_rules! coordinator_conformance {
    ($factory:expr) => {
        $crate::conformance_cases!($factory; kv;
            kv_compare_and_set,
            kv_list_and_watch,
            kv_cas_counter,
            ttl_keys_die_with_their_session,
        );
        $crate::conformance_cases!($factory; leader;
            leader_election_and_terms,
            leader_duties,
        );
        $crate::conformance_cases!($factory; members;
            member_load_reports_round_trip,
        );
    };
}

/// One `#[tokio::test]` per case of `conformance::$module`; used by the two macros above.
#[doc(hidden)]
#[macro_export]
macro_rules! conformance_cases {
    ($factory:expr; $module:ident; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = $factory.await;
                $crate::conformance::$module::$case(store).await;
            }
        )*
    };
}
