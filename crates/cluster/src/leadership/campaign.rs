//! The campaign loop: one task per replica campaigns for (or renews) the leadership and, while
//! leading, runs the leader duties on their own intervals.

use std::sync::Arc;
use std::time::Duration;

use dataplane_spi::{CoordinationError, Coordinator, Leader, Session};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{LeaderDuty, LeaderTerm};
use crate::ClusterOptions;

/// Shortest interval a duty runs on (a zero interval would spin).
const MIN_DUTY_INTERVAL: Duration = Duration::from_millis(10);

/// What the campaign task last learnt, shared with the handles.
#[derive(Debug, Clone, Default)]
struct Observed {
    /// The leader as of the last campaign (or leader query without a session).
    leader: Option<Leader>,
    /// This replica's term and the tokio instant after which the store may no longer count it
    /// as leader: the start of the campaign that renewed it plus the lease.
    term: Option<(LeaderTerm, Instant)>,
}

impl Observed {
    /// Our term, if it cannot have expired yet.
    fn valid_term(&self, now: Instant) -> Option<LeaderTerm> {
        self.term
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(term, _)| term.clone())
    }
}

/// A duty and when it last started: `(term, instant)`.
#[derive(Debug)]
struct Scheduled {
    duty: Arc<dyn LeaderDuty>,
    last: Option<(i64, Instant)>,
}

impl Scheduled {
    fn interval(&self) -> Duration {
        self.duty.interval().max(MIN_DUTY_INTERVAL)
    }

    /// When the duty is next due under `term` (at once when it has not run in that term).
    fn due_at(&self, term: i64, now: Instant) -> Instant {
        match self.last {
            Some((last_term, at)) if last_term == term => at + self.interval(),
            _ => now,
        }
    }
}

/// The leader campaign of one replica, with the duties it runs while leading.
///
/// Invariants: it campaigns only with the current session of the `sessions` channel; duties run
/// only under a term won by that session and not yet expired by tokio time; a duty runs at most
/// once per its interval within one term, and at once in a new term; duty failures are logged
/// and never stop the loop. On shutdown it resigns the term it holds. Duties run one after the
/// other on this task, between campaigns: a run should take well under the lease, or the lead
/// lapses (and the duty's next fenced write is refused).
#[derive(Debug)]
pub struct Leadership {
    coordinator: Arc<dyn Coordinator>,
    sessions: watch::Receiver<Option<Session>>,
    interval: Duration,
    lease: Duration,
    lease_ms: i64,
    duties: Vec<Scheduled>,
    observed: watch::Sender<Observed>,
}

/// Cheap-clone view of a [`Leadership`]: who leads, and this replica's term while it leads.
/// Stays readable after the leadership task ended (then it reports no term).
#[derive(Debug, Clone)]
pub struct LeadershipHandle {
    observed: watch::Receiver<Observed>,
}

impl LeadershipHandle {
    /// The leader as of this replica's last campaign (or, without a session, its last query
    /// of the leader); `None` when there was none or nothing is known yet.
    pub fn known_leader(&self) -> Option<Leader> {
        self.observed.borrow().leader.clone()
    }

    /// This replica's term: `Some` only while it leads, i.e. its last campaign won or renewed
    /// the term and the lease granted then has not run out by tokio time.
    pub fn term(&self) -> Option<LeaderTerm> {
        self.observed.borrow().valid_term(Instant::now())
    }

    /// Whether this replica currently leads (see [`Self::term`]).
    pub fn is_leader(&self) -> bool {
        self.term().is_some()
    }
}

impl Leadership {
    /// A campaign for the sessions published on `sessions`, every
    /// [`ClusterOptions::campaign_interval`], asking for a lead of [`ClusterOptions::lease`].
    /// Nothing runs before [`Self::run`].
    pub fn new(
        coordinator: Arc<dyn Coordinator>,
        sessions: watch::Receiver<Option<Session>>,
        options: &ClusterOptions,
    ) -> (Self, LeadershipHandle) {
        let (observed, receiver) = watch::channel(Observed::default());
        let leadership = Self {
            coordinator,
            sessions,
            interval: options.campaign_interval(),
            lease: options.lease,
            lease_ms: options.lease_ms(),
            duties: Vec::new(),
            observed,
        };
        (leadership, LeadershipHandle { observed: receiver })
    }

    /// Adds a duty to run while leading, on the duty's own interval (at least 10 ms).
    #[must_use]
    pub fn with_duty(mut self, duty: Arc<dyn LeaderDuty>) -> Self {
        self.duties.push(Scheduled { duty, last: None });
        self
    }

    /// Campaigns and runs the duties until `shutdown` turns true (or its sender is dropped),
    /// then resigns the term it holds. A new session triggers a campaign at once.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut sessions = self.sessions.clone();
        let mut sessions_open = true;
        let mut next_campaign = Instant::now();
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let wake = self.next_wake(next_campaign);
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    continue;
                }
                changed = sessions.changed(), if sessions_open => {
                    match changed {
                        Ok(()) => next_campaign = Instant::now(),
                        Err(_) => sessions_open = false,
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            if Instant::now() >= next_campaign {
                let started = Instant::now();
                self.campaign(started).await;
                next_campaign = started + self.interval;
            }
            self.run_due_duties().await;
        }
        self.resign().await;
    }

    /// The next campaign, or the earliest due duty while leading.
    fn next_wake(&self, next_campaign: Instant) -> Instant {
        let now = Instant::now();
        let Some(term) = self.observed.borrow().valid_term(now) else {
            return next_campaign;
        };
        self.duties
            .iter()
            .map(|scheduled| scheduled.due_at(term.term, now))
            .fold(next_campaign, Instant::min)
    }

    /// One campaign (or renewal) with the current session; without one, reads the leader.
    async fn campaign(&mut self, started: Instant) {
        let session = self.sessions.borrow().clone();
        let Some(session) = session else {
            self.set_term(None);
            match self.coordinator.leader().await {
                Ok(leader) => self.observed.send_modify(|o| o.leader = leader),
                Err(error) => tracing::debug!(%error, "could not read the leader"),
            }
            return;
        };
        match self.coordinator.campaign(&session, self.lease_ms).await {
            Ok(leader) => {
                let term = leader
                    .as_ref()
                    .filter(|l| {
                        l.leader == session.runtime_id && l.incarnation == session.incarnation
                    })
                    .map(|l| LeaderTerm {
                        session: session.clone(),
                        term: l.term,
                    });
                self.observed.send_modify(|o| o.leader = leader);
                self.set_term(term.map(|t| (t, started + self.lease)));
            }
            Err(CoordinationError::SessionGone(_)) => {
                tracing::debug!(member = %session.runtime_id, "no campaign: the session is gone");
                self.set_term(None);
            }
            Err(error) => {
                // Keep the term until its lease runs out: the next campaign may renew it.
                tracing::warn!(%error, "leader campaign failed");
            }
        }
    }

    /// Records this replica's term, logging a new term or the loss of one.
    fn set_term(&self, term: Option<(LeaderTerm, Instant)>) {
        let previous = self.observed.borrow().term.as_ref().map(|(t, _)| t.clone());
        let current = term.as_ref().map(|(t, _)| t);
        if previous.as_ref() != current {
            if let Some(previous) = &previous {
                tracing::info!(term = previous.term, "no longer the leader");
            }
            if let Some(current) = current {
                tracing::info!(term = current.term, "became the leader");
            }
        }
        self.observed.send_modify(|o| o.term = term);
    }

    /// Runs every duty that is due under the current term, one after the other; stops when the
    /// term may have run out meanwhile.
    async fn run_due_duties(&mut self) {
        for scheduled in &mut self.duties {
            let now = Instant::now();
            let Some(term) = self.observed.borrow().valid_term(now) else {
                return;
            };
            if scheduled.due_at(term.term, now) > now {
                continue;
            }
            scheduled.last = Some((term.term, now));
            if let Err(error) = scheduled.duty.run(&term).await {
                tracing::warn!(duty = scheduled.duty.name(), term = term.term, %error, "leader duty failed");
            }
        }
    }

    /// Gives up the term this replica holds, if any, so a peer can lead at once.
    async fn resign(&self) {
        let held = self.observed.borrow().term.as_ref().map(|(t, _)| t.clone());
        self.set_term(None);
        if let Some(term) = held {
            match self.coordinator.resign(&term.session, term.term).await {
                Ok(()) => tracing::info!(term = term.term, "resigned the leadership"),
                Err(error) => tracing::debug!(%error, term = term.term, "resign refused"),
            }
        }
    }
}
