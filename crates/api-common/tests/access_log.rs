//! The access-log line and the request id in the handler's lines, alone in this binary: a
//! thread-local subscriber and tests on other threads race over tracing's callsite cache.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use actix_web::middleware::from_fn;
use actix_web::{test, web, App, HttpResponse};
use api_common::{access_log, ACCESS_LOG_TARGET, REQUEST_ID_HEADER};

async fn flow(path: web::Path<String>) -> HttpResponse {
    tracing::info!(flow = %path, "handling the flow");
    HttpResponse::Ok().body("hello")
}

/// A writer collecting everything the subscriber of a test logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

#[actix_web::test]
async fn the_access_line_has_the_pattern_and_the_handler_lines_the_request_id() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = test::init_service(
        App::new().service(
            web::scope("/log")
                .wrap(from_fn(access_log))
                .route("/flows/{id}", web::get().to(flow)),
        ),
    )
    .await;
    let req = test::TestRequest::get()
        .uri("/log/flows/flow-77?access_token=t0ken")
        .insert_header((REQUEST_ID_HEADER, "req-9"))
        .insert_header(("authorization", "Bearer b3arer"))
        .to_request();
    test::call_service(&app, req).await;
    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let handler = logged
        .lines()
        .find(|l| l.contains("handling the flow"))
        .unwrap();
    assert!(handler.contains("request_id=req-9"), "{handler}");
    let access = logged
        .lines()
        .find(|l| l.contains(ACCESS_LOG_TARGET))
        .unwrap_or_else(|| panic!("no access line in {logged}"));
    for part in [
        "request_id=req-9",
        "method=\"GET\"",
        "route=/log/flows/{id}",
        "status=200",
        "bytes=5",
        "duration_ms=",
    ] {
        assert!(access.contains(part), "{part} not in {access}");
    }
    for leak in ["flow-77", "t0ken", "access_token", "b3arer"] {
        assert!(!access.contains(leak), "{leak} in {access}");
    }
}
