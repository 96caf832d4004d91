//! [`FakeControlPlane`]: a control plane that records and schema-checks callbacks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// A callback received by the [`FakeControlPlane`].
#[derive(Debug, Clone)]
pub struct Callback {
    /// The transfer (process) id from the URL.
    pub process_id: String,
    /// `prepared`, `started`, `completed` or `errored`.
    pub event: String,
    /// The body.
    pub body: Value,
}

/// A control plane that records callbacks, checks them against the DPS schema and can be told
/// to fail the first `n` calls with 500.
#[derive(Clone, Debug)]
pub struct FakeControlPlane {
    callbacks: Arc<Mutex<Vec<Callback>>>,
    failures_left: Arc<AtomicUsize>,
    /// Calls received, accepted or not.
    pub attempts: Arc<AtomicUsize>,
    /// `http://127.0.0.1:PORT/signaling` — the endpoint to register.
    pub endpoint: String,
}

impl FakeControlPlane {
    /// Starts it on `listener` (bind port 0, or a port chosen earlier to start it late).
    pub fn start_on(listener: std::net::TcpListener, fail_first: usize) -> Self {
        let callbacks = Arc::new(Mutex::new(Vec::new()));
        let failures_left = Arc::new(AtomicUsize::new(fail_first));
        let attempts = Arc::new(AtomicUsize::new(0));
        let endpoint = format!("http://{}/signaling", listener.local_addr().unwrap());
        let server = {
            let (callbacks, failures_left, attempts) =
                (callbacks.clone(), failures_left.clone(), attempts.clone());
            HttpServer::new(move || {
                let (callbacks, failures_left, attempts) =
                    (callbacks.clone(), failures_left.clone(), attempts.clone());
                App::new().route(
                    "/signaling/transfers/{process}/dataflow/{event}",
                    web::post().to(
                        move |path: web::Path<(String, String)>, body: web::Json<Value>| {
                            let (callbacks, failures_left, attempts) =
                                (callbacks.clone(), failures_left.clone(), attempts.clone());
                            async move {
                                attempts.fetch_add(1, Ordering::Relaxed);
                                if failures_left.load(Ordering::Relaxed) > 0 {
                                    failures_left.fetch_sub(1, Ordering::Relaxed);
                                    return HttpResponse::InternalServerError().finish();
                                }
                                let (process_id, event) = path.into_inner();
                                callbacks.lock().unwrap().push(Callback {
                                    process_id,
                                    event,
                                    body: body.into_inner(),
                                });
                                HttpResponse::Ok().finish()
                            }
                        },
                    ),
                )
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run()
        };
        tokio::spawn(server);
        Self {
            callbacks,
            failures_left,
            attempts,
            endpoint,
        }
    }

    /// Starts it on a free port.
    pub fn start(fail_first: usize) -> Self {
        Self::start_on(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            fail_first,
        )
    }

    /// Makes the next `n` calls fail with 500.
    pub fn fail_next(&self, n: usize) {
        self.failures_left.store(n, Ordering::Relaxed);
    }

    /// Callbacks accepted so far.
    pub fn callbacks(&self) -> Vec<Callback> {
        self.callbacks.lock().unwrap().clone()
    }

    /// Waits for a callback of `event` for `process_id`.
    pub async fn wait_for(&self, process_id: &str, event: &str, timeout: Duration) -> Callback {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self
                .callbacks()
                .into_iter()
                .find(|c| c.process_id == process_id && c.event == event)
            {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {event} callback for {process_id} within {timeout:?}; got {:?}",
                self.callbacks()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The DPS registration message of this control plane.
    pub fn registration(&self, id: &str) -> Value {
        json!({"controlplaneId": id, "endpoint": self.endpoint, "authorization": {"type": "none"}})
    }
}
