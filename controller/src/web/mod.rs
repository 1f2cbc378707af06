//! The operator's dashboard, served by the controller under `/ui`: the rollouts, and per rollout
//! its phase, its rings, the timeline picture, the gate table of every tick, the rule diff against
//! the previous release, the audit, and halt / resume behind a confirmation.
//!
//! **Every page needs a signed-in operator** (the pages name hosts, rules and operators): a
//! request without a session is sent to the sign-in page, and a changing request without one is
//! refused with 403. An operator signs in with their bearer token or with a one-time code from
//! `POST /v1/ui/signin-codes` (what `rulebox rollout dashboard` prints as a link). The session is
//! an `HttpOnly`, `SameSite=Strict` cookie; every changing form carries the session's CSRF token;
//! the pages are sent with a `Content-Security-Policy` that allows no script at all.

pub mod diff;
pub mod gates;
pub mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;
use rulebox_rollout::{Effect, Evaluation, RolloutError, chart};
use serde::Deserialize;

use crate::error::ApiError;
use crate::operator_api::{self, RolloutView};
use crate::service::Service;
use crate::store::{AuditKind, RolloutRow, audit, rollouts, samples};
use session::{Session, same_secret};

/// Seconds between the pages' automatic refreshes.
pub const REFRESH_SECS: u64 = 5;
/// Gate evaluations shown by default (`?ticks=N` shows up to [`MAX_TICKS`]).
pub const DEFAULT_TICKS: i64 = 20;
/// Most gate evaluations a page shows.
pub const MAX_TICKS: i64 = 10_000;
/// Audit records shown.
pub const AUDIT_ROWS: i64 = 200;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML response with the dashboard's security headers.
fn html(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `next` if it is a dashboard path (no open redirect), else `/ui`.
fn safe_next(next: Option<&str>) -> String {
    let ok = |n: &str| {
        (n == "/ui" || n.starts_with("/ui/"))
            && !n.contains("//")
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-?=&.".contains(&b))
    };
    next.filter(|n| ok(n)).unwrap_or("/ui").to_owned()
}

fn error_page(e: &ApiError, operator: Option<&str>) -> Response {
    let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    html(status, pages::problem("Refused", &e.message, operator))
}

/// The session of a page request, or the redirect to the sign-in page.
fn viewer(svc: &Service, headers: &HeaderMap, here: &str) -> Result<Session, Box<Response>> {
    svc.sessions.of_request(headers).ok_or_else(|| {
        Box::new(redirect(
            &format!("/ui/login?next={}", safe_next(Some(here))),
            None,
        ))
    })
}

/// The session of a changing request whose form carries `csrf`, or the refusal.
fn actor(svc: &Service, headers: &HeaderMap, csrf: &str) -> Result<Session, Box<Response>> {
    let Some(s) = svc.sessions.of_request(headers) else {
        tracing::warn!("dashboard change refused: no session");
        return Err(Box::new(html(
            StatusCode::FORBIDDEN,
            pages::problem(
                "Refused",
                "Sign in first: this needs an operator's session.",
                None,
            ),
        )));
    };
    if !same_secret(csrf, &s.csrf) {
        tracing::warn!(operator = %s.operator, "dashboard change refused: CSRF token mismatch");
        return Err(Box::new(html(
            StatusCode::FORBIDDEN,
            pages::problem(
                "Refused",
                "This form is stale or was not sent from the dashboard (its CSRF token does not match your session). Reload the page and try again.",
                Some(&s.operator),
            ),
        )));
    }
    Ok(s)
}

/// The dashboard's routes (under `/ui`) and the sign-in code endpoint of the operator API.
pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/ui", get(list))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/signin/{code}", get(signin))
        .route("/ui/logout", get(logout))
        .route("/ui/rollouts/{id}", get(rollout))
        .route("/ui/rollouts/{id}/halt", get(confirm_halt).post(halt))
        .route("/ui/rollouts/{id}/resume", get(confirm_resume).post(resume))
        .route("/v1/ui/signin-codes", post(signin_code))
}

/// `?next=`.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    /// Where to go after signing in.
    pub next: Option<String>,
}

async fn login_form(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if svc.sessions.of_request(&headers).is_some() {
        return redirect(&next, None);
    }
    html(StatusCode::OK, pages::login(&next, None))
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The operator's bearer token.
    pub token: String,
    /// Where to go after.
    pub next: Option<String>,
}

async fn login(State(svc): State<Arc<Service>>, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(f.next.as_deref());
    let Some(who) = svc
        .config
        .operators
        .authenticate(f.token.trim())
        .map(str::to_owned)
    else {
        tracing::warn!("dashboard sign-in refused: unknown token");
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(&next, Some("Unknown operator token.")),
        );
    };
    sign_in(&svc, &who, &next)
}

fn sign_in(svc: &Service, who: &str, next: &str) -> Response {
    match svc.sessions.create(who) {
        Some(id) => {
            tracing::info!(operator = %who, "dashboard sign-in");
            redirect(next, Some(session::set_cookie(&id)))
        }
        None => html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::problem("Unavailable", "No session could be created; retry.", None),
        ),
    }
}

async fn signin(
    State(svc): State<Arc<Service>>,
    Path(code): Path<String>,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    match svc.sessions.redeem_code(&code) {
        Some(who) => sign_in(&svc, &who, &next),
        None => {
            tracing::warn!("dashboard sign-in refused: unknown or used code");
            html(
                StatusCode::UNAUTHORIZED,
                pages::login(
                    &next,
                    Some("This sign-in link is unknown, used or expired."),
                ),
            )
        }
    }
}

async fn logout(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    svc.sessions.end(&headers);
    redirect("/ui/login", Some(session::clear_cookie()))
}

/// `POST /v1/ui/signin-codes` (bearer): a one-time dashboard sign-in code, valid a minute.
async fn signin_code(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = operator_api::operator(&svc, &headers)?;
    let code = svc.sessions.issue_code(&who).ok_or_else(|| {
        ApiError::new(
            rulebox_controlplane_proto::ErrorCode::Unavailable,
            "no code could be made; retry",
        )
    })?;
    let body = serde_json::json!({
        "code": code,
        "path": format!("/ui/signin/{code}"),
        "expires_in_secs": session::CODE_TTL_MS / 1000,
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

async fn list(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let s = match viewer(&svc, &headers, "/ui") {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let all = async {
        let mut conn = svc.store.pool().acquire().await?;
        Ok::<_, ApiError>(rollouts::list(&mut conn).await?)
    }
    .await;
    match all {
        Ok(all) => html(StatusCode::OK, pages::list(&all, &s.operator, REFRESH_SECS)),
        Err(e) => error_page(&e, Some(&s.operator)),
    }
}

/// `?ticks=`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// How many gate evaluations to show.
    pub ticks: Option<i64>,
}

/// The timeline chart of a rollout: its recorded per-ring samples, times since its start.
fn timeline(
    view: &RolloutView,
    recorded: &[(u64, Vec<rulebox_rollout::RingStatus>)],
) -> chart::Chart {
    let start = view.created_at;
    let (halted, completed) = match &view.status.phase {
        rulebox_rollout::Phase::Halted { at, .. } => (Some(at.saturating_sub(start)), None),
        rulebox_rollout::Phase::Complete { at } => (None, Some(at.saturating_sub(start))),
        _ => (None, None),
    };
    chart::Chart {
        title: format!(
            "rollout {} of release {}: share of each ring's hosts over time",
            view.id, view.release
        ),
        ring_sizes: view.status.ring_sizes(),
        ring_opened: view
            .status
            .rings
            .iter()
            .filter_map(|r| r.opened_at.map(|at| at.saturating_sub(start)))
            .collect(),
        halted,
        completed,
        samples: recorded
            .iter()
            .map(|(at, rings)| chart::ChartSample {
                t: at.saturating_sub(start),
                rings: rings.iter().map(chart::ChartCounts::of_ring).collect(),
            })
            .collect(),
        end: view.now.saturating_sub(start),
    }
}

async fn load_page(
    svc: &Arc<Service>,
    id: i64,
    ticks: i64,
    csrf: &str,
) -> Result<pages::RolloutPage, ApiError> {
    let view = operator_api::view(svc, id).await?;
    let mut conn = svc.store.pool().acquire().await?;
    let row = rollouts::get(&mut conn, svc.store.dialect(), id, false)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                rulebox_controlplane_proto::ErrorCode::NotFound,
                format!("no rollout {id}"),
            )
        })?;
    let evaluations = audit::recent(&mut conn, id, Some(AuditKind::GateEvaluation), ticks)
        .await?
        .into_iter()
        .map(|a| {
            let e = serde_json::from_value::<Evaluation>(a.detail.clone()).ok();
            (a, e)
        })
        .collect();
    let evaluations_total = audit::count(&mut conn, id, AuditKind::GateEvaluation).await?;
    let mut records = audit::recent(&mut conn, id, None, AUDIT_ROWS * 4).await?;
    records.retain(|a| a.kind != AuditKind::GateEvaluation.name());
    records.truncate(usize::try_from(AUDIT_ROWS).unwrap_or(200));
    let recorded = samples::list(&mut conn, id).await?;
    drop(conn);
    let diff = match row.core.plan.previous {
        None => None,
        Some(previous) => {
            let (repo, root, release) = (svc.repo.clone(), svc.root.clone(), view.release);
            Some(
                tokio::task::spawn_blocking(move || diff::between(&repo, &root, previous, release))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string())),
            )
        }
    };
    let svg = chart::render(&timeline(&view, &recorded));
    let mut peak_good = vec![0; view.status.rings.len()];
    for (_, rings) in &recorded {
        for (peak, r) in peak_good.iter_mut().zip(rings) {
            *peak = (*peak).max(r.good);
        }
    }
    Ok(pages::RolloutPage {
        view,
        gates: row.core.plan.gates.clone(),
        evaluations,
        evaluations_total,
        audit: records,
        diff,
        svg,
        peak_good,
        csrf: csrf.to_owned(),
    })
}

async fn rollout(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Response {
    let s = match viewer(&svc, &headers, &format!("/ui/rollouts/{id}")) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let ticks = q.ticks.unwrap_or(DEFAULT_TICKS).clamp(1, MAX_TICKS);
    match load_page(&svc, id, ticks, &s.csrf).await {
        Ok(p) => html(
            StatusCode::OK,
            pages::rollout(&p, &s.operator, REFRESH_SECS),
        ),
        Err(e) => error_page(&e, Some(&s.operator)),
    }
}

async fn confirm_page(
    svc: &Arc<Service>,
    headers: &HeaderMap,
    id: i64,
    action: pages::Action,
) -> Response {
    let here = match action {
        pages::Action::Halt => format!("/ui/rollouts/{id}/halt"),
        pages::Action::Resume => format!("/ui/rollouts/{id}/resume"),
    };
    let s = match viewer(svc, headers, &here) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match operator_api::view(svc, id).await {
        Ok(v) => html(
            StatusCode::OK,
            pages::confirm(&v, action, &s.csrf, &s.operator),
        ),
        Err(e) => error_page(&e, Some(&s.operator)),
    }
}

async fn confirm_halt(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    confirm_page(&svc, &headers, id, pages::Action::Halt).await
}

async fn confirm_resume(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    confirm_page(&svc, &headers, id, pages::Action::Resume).await
}

/// The halt and resume forms.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// Why, for the audit.
    pub reason: String,
    /// `yes` to also issue a signed revert (halt only).
    pub revert: Option<String>,
}

/// Runs an operator's halt or resume from a form: the session and CSRF token checked, the reason
/// required, the transition run as the API runs it; then back to the rollout's page.
async fn act(
    svc: &Service,
    headers: &HeaderMap,
    id: i64,
    f: &ActionForm,
    kind: AuditKind,
    apply: impl FnOnce(&mut RolloutRow, u64, &str, &str) -> Result<Vec<Effect>, RolloutError>,
) -> Response {
    let s = match actor(svc, headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let who = s.operator.clone();
    let reason = f.reason.trim().to_owned();
    let done = async {
        operator_api::check_reason(&reason)?;
        operator_api::transition(svc, id, &who, &reason, kind, |row, now| {
            apply(row, now, &who, &reason)
        })
        .await
    }
    .await;
    match done {
        Ok(()) => {
            tracing::warn!(id, operator = %who, action = kind.name(), "rollout changed from the dashboard");
            redirect(&format!("/ui/rollouts/{id}"), None)
        }
        Err(e) => error_page(&e, Some(&s.operator)),
    }
}

async fn halt(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<ActionForm>,
) -> Response {
    let revert = f.revert.as_deref() == Some("yes");
    act(
        &svc,
        &headers,
        id,
        &f,
        AuditKind::Halt,
        |row, now, who, reason| row.core.halt(now, who, reason, revert),
    )
    .await
}

async fn resume(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<ActionForm>,
) -> Response {
    act(
        &svc,
        &headers,
        id,
        &f,
        AuditKind::Resume,
        |row, now, _, _| row.core.resume(now),
    )
    .await
}
