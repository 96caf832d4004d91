use chrono::{Duration, Utc};
use selector_spi::{
    DataPlaneInstance, DataPlaneRegistration, InstanceLoad, SelectionContext, SelectionRequest,
    SelectionStrategy,
};

use super::LeastLoadedStrategy;
use crate::InMemoryInstanceStore;

const STALE_AFTER_MS: u64 = 3_000;

fn instance(id: &str, load: Option<(u64, u64, u64)>) -> DataPlaneInstance {
    let now = Utc::now();
    let mut instance = DataPlaneInstance::from_registration(
        &DataPlaneRegistration::new(id, format!("http://{id}.example"), vec![]),
        now,
    );
    instance.load = load.map(|(running, capacity, bytes)| {
        InstanceLoad::new(running, capacity, bytes, now, 100, STALE_AFTER_MS)
    });
    instance
}

fn stale(mut instance: DataPlaneInstance) -> DataPlaneInstance {
    if let Some(load) = &mut instance.load {
        *load = InstanceLoad::new(
            load.running,
            load.capacity,
            load.bytes_per_second,
            load.reported_at,
            STALE_AFTER_MS + 1,
            STALE_AFTER_MS,
        );
    }
    instance
}

async fn pick(candidates: &[DataPlaneInstance]) -> String {
    let store = InMemoryInstanceStore::new();
    LeastLoadedStrategy
        .select(
            candidates,
            &SelectionRequest::for_profile("p"),
            SelectionContext::new(&store),
        )
        .await
        .unwrap()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn lowest_ratio_wins() {
    let candidates = [
        instance("a", Some((5, 10, 0))),
        instance("b", Some((1, 10, 0))),
        instance("c", Some((3, 4, 0))),
    ];
    assert_eq!(pick(&candidates).await, "b");
}

#[tokio::test]
async fn ties_go_to_fewer_bytes_then_longest_idle() {
    let candidates = [
        instance("a", Some((1, 10, 500))),
        instance("b", Some((1, 10, 100))),
    ];
    assert_eq!(pick(&candidates).await, "b");
    let mut a = instance("a", Some((0, 10, 0)));
    let mut b = instance("b", Some((0, 10, 0)));
    a.last_active = Some(Utc::now());
    b.last_active = Some(Utc::now() - Duration::seconds(5));
    assert_eq!(pick(&[a.clone(), b.clone()]).await, "b");
    // Never selected beats any last-active time.
    let c = instance("c", Some((0, 10, 0)));
    assert_eq!(pick(&[a, b, c]).await, "c");
}

#[tokio::test]
async fn stale_and_missing_reports_rank_after_fresh_ones() {
    let candidates = [
        stale(instance("a", Some((0, 10, 0)))),
        instance("b", None),
        instance("c", Some((8, 10, 1_000))),
    ];
    assert_eq!(pick(&candidates).await, "c");
    // Without any fresh one with room, an unknown one comes before one at capacity.
    let candidates = [instance("a", Some((10, 10, 0))), instance("b", None)];
    assert_eq!(pick(&candidates).await, "b");
    // A stale report at capacity is unknown, not at capacity.
    assert!(
        !stale(instance("a", Some((10, 10, 0))))
            .load
            .unwrap()
            .at_capacity
    );
}

#[tokio::test]
async fn at_capacity_is_offered_only_when_all_are() {
    let candidates = [
        instance("a", Some((4, 4, 0))),
        instance("b", Some((9, 10, 0))),
    ];
    assert_eq!(pick(&candidates).await, "b");
    let candidates = [
        instance("a", Some((4, 4, 0))),
        instance("b", Some((12, 10, 0))),
    ];
    let chosen = pick(&candidates).await;
    assert_eq!(chosen, "a");
    assert!(candidates[0].load.as_ref().unwrap().at_capacity);
}

#[tokio::test]
async fn unlimited_capacity_ranks_by_running_count() {
    let candidates = [
        instance("a", Some((20, 0, 0))),
        instance("b", Some((2, 0, 0))),
    ];
    assert_eq!(pick(&candidates).await, "b");
    assert!(!candidates[0].load.as_ref().unwrap().at_capacity);
}
