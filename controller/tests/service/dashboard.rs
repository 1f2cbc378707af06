//! The dashboard over loopback HTTP: sessions, CSRF, halt and resume from the page, escaping, the
//! rule diff of two real releases, and the pages in a real headless Chromium.

use rulebox_controller::testing::{self, WebClient, WebPage, artifacts, chromium, ring_rows};

use super::*;

fn rolling(h: &Harness, id: i64) -> bool {
    phase(&view(h, id)) == "rolling"
}

fn signed_in(h: &Harness) -> WebClient {
    let mut web = WebClient::new(&h.base);
    let page = web.sign_in(&h.content.token).unwrap();
    assert_eq!(page.status, 303, "{}", page.body);
    web
}

/// The rule ids of a published release, read straight from its manifest.
fn rule_ids(h: &Harness, release: u64) -> Vec<String> {
    let bytes = std::fs::read(
        h.content
            .repo_dir
            .join(rulebox_controlplane_proto::repo::manifest_file(release)),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let mut ids: Vec<String> = v["signed"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn the_dashboard_refuses_without_a_session_or_csrf_token_and_halts_from_the_form() {
    let Some(h) = harness(Db::Sqlite) else { return };
    let mut agents = fleet(&h, 20);
    let id = start_rollout(&h, 42);
    let mut anon = WebClient::new(&h.base);
    // Pages without a session go to the sign-in page; a change without one is refused.
    for path in ["/ui", &format!("/ui/rollouts/{id}")] {
        let page = anon.get(path).unwrap();
        assert_eq!(page.status, 303, "{path}");
        assert!(page.location.unwrap().starts_with("/ui/login?next=/ui"));
        assert!(!page.body.contains("ring"));
    }
    let page = anon
        .post_form(
            &format!("/ui/rollouts/{id}/halt"),
            &[("csrf", "x"), ("reason", "no session")],
        )
        .unwrap();
    assert_eq!(page.status, 403);
    assert!(rolling(&h, id));
    // A wrong token signs nobody in.
    let page = anon.sign_in("not-a-token-of-anyone").unwrap();
    assert_eq!(page.status, 401);
    assert!(anon.get("/ui").unwrap().status == 303);

    let mut web = signed_in(&h);
    let confirm = web.get(&format!("/ui/rollouts/{id}/halt")).unwrap();
    assert_eq!(confirm.status, 200);
    let csrf = WebClient::csrf_of(&confirm).expect("the confirmation form carries a CSRF token");
    // Without the session's CSRF token (a forged cross-site form), nothing happens.
    for forged in ["", "0000", &csrf[..csrf.len() - 1]] {
        let page = web
            .post_form(
                &format!("/ui/rollouts/{id}/halt"),
                &[("csrf", forged), ("reason", "forged")],
            )
            .unwrap();
        assert_eq!(page.status, 403, "{}", page.body);
    }
    assert!(rolling(&h, id));
    // A reason is required.
    let page = web
        .post_form(
            &format!("/ui/rollouts/{id}/halt"),
            &[("csrf", &csrf), ("reason", "  ")],
        )
        .unwrap();
    assert_eq!(page.status, 400);
    assert!(rolling(&h, id));
    // The real form halts, with the operator's name and reason in the audit.
    let hostile = r#"<script>alert("halt")</script> & "quoted" <img src=x onerror=y>"#;
    let page = web
        .post_form(
            &format!("/ui/rollouts/{id}/halt"),
            &[("csrf", &csrf), ("reason", hostile)],
        )
        .unwrap();
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location.as_deref(),
        Some(&*format!("/ui/rollouts/{id}"))
    );
    let v = view(&h, id);
    assert_eq!(v["status"]["phase"]["halted"]["by"], "alice", "{v:#}");
    assert_eq!(v["status"]["phase"]["halted"]["reverted"], false);
    let halts = audit(&h, id, "halt");
    assert_eq!(halts.len(), 1);
    assert_eq!(halts[0]["reason"], hostile);
    // Halted: no host is offered the release.
    let mut seen = Seen::default();
    for _ in 0..5 {
        round(&h, &mut agents, Behaviour::Healthy, &mut seen);
    }
    assert!(
        seen.offered.is_empty(),
        "offered while halted: {:?}",
        seen.offered
    );
    // The page shows the halt, with the operator's text escaped, and allows no script.
    let page = web.get(&format!("/ui/rollouts/{id}")).unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"data-phase="halted""#));
    assert!(page.body.contains("&lt;script&gt;alert("), "{}", page.body);
    assert!(page.body.contains("&lt;img src=x onerror=y&gt;"));
    assert!(!page.body.contains("<script"));
    assert!(!page.body.contains("<img"));
    let csp = page.csp.unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
    // Resume from its form goes on.
    let confirm = web.get(&format!("/ui/rollouts/{id}/resume")).unwrap();
    let csrf2 = WebClient::csrf_of(&confirm).unwrap();
    assert_eq!(csrf2, csrf, "one token per session");
    let page = web
        .post_form(
            &format!("/ui/rollouts/{id}/resume"),
            &[("csrf", &csrf), ("reason", "false alarm")],
        )
        .unwrap();
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(rolling(&h, id));
    // Signing out ends the session: the same cookie no longer works.
    let page = web.get("/ui/logout").unwrap();
    assert_eq!(page.status, 303);
    assert_eq!(web.get("/ui").unwrap().status, 303);
}

#[test]
fn a_one_time_sign_in_link_works_once_and_never_redirects_off_the_dashboard() {
    let Some(h) = harness(Db::Sqlite) else { return };
    let (status, body) = h.op.post("/v1/ui/signin-codes", &json!({})).unwrap();
    assert_eq!(status, 201, "{body}");
    let path = body["path"].as_str().unwrap().to_owned();
    let mut web = WebClient::new(&h.base);
    let page = web.get(&format!("{path}?next=//evil.example/ui")).unwrap();
    assert_eq!(page.status, 303);
    assert_eq!(page.location.as_deref(), Some("/ui"));
    assert_eq!(web.get("/ui").unwrap().status, 200);
    let mut again = WebClient::new(&h.base);
    assert_eq!(again.get(&path).unwrap().status, 401, "a code is used once");
    // The code endpoint needs the bearer credential.
    let stranger = OperatorClient::new(&h.base, "0123456789abcdef0123456789abcdef");
    let (status, _) = stranger.post("/v1/ui/signin-codes", &json!({})).unwrap();
    assert_eq!(status, 401);
}

#[test]
fn the_rule_diff_of_two_real_releases_names_what_was_added() {
    let Some(h) = harness(Db::Sqlite) else { return };
    let (old, new) = (rule_ids(&h, 41), rule_ids(&h, 42));
    assert_eq!(old.len(), 1);
    assert_eq!(new.len(), 2);
    let added: Vec<&String> = new.iter().filter(|id| !old.contains(id)).collect();
    let repo = h.content.repo().unwrap();
    let d = rulebox_controller::web::diff::between(&repo, &h.root, 41, 42).unwrap();
    assert_eq!(
        d.added.iter().map(|r| &r.id).collect::<Vec<_>>(),
        added,
        "{d:?}"
    );
    assert!(d.removed.is_empty() && d.changed.is_empty());
    assert_eq!(d.unchanged, 1);
    let back = rulebox_controller::web::diff::between(&repo, &h.root, 42, 41).unwrap();
    assert_eq!(back.removed.len(), 1);
    assert_eq!(back.removed[0].id, *added[0]);
    // A release that is not published is named as such.
    let missing = rulebox_controller::web::diff::between(&repo, &h.root, 41, 99).unwrap_err();
    assert!(missing.contains("release 99"), "{missing}");
    // And the page shows it.
    let _agents = fleet(&h, 20);
    let id = start_rollout(&h, 42);
    let mut web = signed_in(&h);
    let page = web.get(&format!("/ui/rollouts/{id}")).unwrap();
    let table = &page.body[page.body.find(r#"id="diff""#).unwrap()..];
    assert!(
        table.contains(&format!("added</td><td><code>{}</code>", added[0])),
        "{table}"
    );
    assert!(
        page.body
            .contains("1 added, 0 removed, 0 changed, 1 unchanged")
    );
}

/// Headless Chromium on a fresh sign-in link to `path` (see `testing::browse`).
fn browse(
    h: &Harness,
    chromium: &std::path::Path,
    path: &str,
    shot: Option<&std::path::Path>,
) -> String {
    testing::browse(&h.base, &h.op, chromium, path, shot).expect("chromium shows the page")
}

#[test]
fn headless_chromium_shows_a_halt_in_ring_0_and_a_completed_rollout_at_100_percent() {
    let Some(chromium) = chromium() else {
        eprintln!("SKIPPED: no Chromium at /usr/bin/chromium (or $RULEBOX_CHROMIUM)");
        return;
    };
    let dir = artifacts();
    // The bad release: quarantines in ring 0, halted there by its gate.
    {
        let Some(h) = harness(Db::Sqlite) else { return };
        let mut agents = fleet(&h, 20);
        let id = start_rollout(&h, 42);
        let mut seen = Seen::default();
        drive_until(
            &h,
            &mut agents,
            id,
            Behaviour::Quarantines,
            &mut seen,
            |v| v["status"]["rings"][0]["reverted"] == 1,
            Duration::from_secs(30),
        );
        let dom = browse(&h, &chromium, &format!("/ui/rollouts/{id}"), None);
        std::fs::write(dir.join("dashboard-halted.html"), &dom).unwrap();
        assert!(dom.contains(r#"data-phase="halted""#), "{dom}");
        assert!(dom.contains("HALTED in ring 0"));
        let gates = &dom[dom.find(r#"id="failing-gates""#).unwrap()..];
        assert!(gates[..gates.find("</ul>").unwrap()].contains("quarantine"));
        assert!(
            dom.contains(r#"class="fail">FAIL</td>"#),
            "the gate table shows the failed gate"
        );
        let rows = ring_rows(&dom);
        assert_eq!(rows.len(), 4);
        assert!(!rows[0].contains("not opened"));
        for r in &rows[1..] {
            assert!(r.contains("not opened"), "only ring 0 opened: {r}");
        }
        assert!(
            dom.contains(r#"class="mark-halt""#),
            "the halt is marked in the picture"
        );
        assert!(
            !dom.contains(r#"id="halt""#),
            "no halt button on a halted rollout"
        );
        let shot = dir.join("dashboard-halted.png");
        browse(&h, &chromium, &format!("/ui/rollouts/{id}"), Some(&shot));
        assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    }
    // The good release: every ring opens and reaches 100% GOOD.
    let Some(h) = harness(Db::Sqlite) else { return };
    let mut agents = fleet(&h, 20);
    let id = start_rollout(&h, 42);
    let mut seen = Seen::default();
    drive_until(
        &h,
        &mut agents,
        id,
        Behaviour::Healthy,
        &mut seen,
        |v| phase(v) == "complete",
        Duration::from_secs(180),
    );
    let dom = browse(&h, &chromium, &format!("/ui/rollouts/{id}"), None);
    std::fs::write(dir.join("dashboard-complete.html"), &dom).unwrap();
    assert!(dom.contains(r#"data-phase="complete""#), "{dom}");
    let rows = ring_rows(&dom);
    assert_eq!(rows.len(), 4);
    for r in &rows {
        // Every ring reached 100% GOOD (the hosts, played by this test, fall silent once it stops
        // driving them: controller time runs 600 times as fast).
        assert!(r.contains(r#"class="num peak">100%</td>"#), "{r}");
    }
    assert!(dom.contains(r#"class="mark-complete""#));
    assert_eq!(dom.matches(r#"class="mark-open""#).count(), 4);
    let shot = dir.join("dashboard-complete.png");
    browse(&h, &chromium, &format!("/ui/rollouts/{id}"), Some(&shot));
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    let list: WebPage = signed_in(&h).get("/ui").unwrap();
    assert!(list.body.contains(&format!("/ui/rollouts/{id}")));
}
