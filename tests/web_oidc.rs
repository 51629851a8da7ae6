//! Sign-in with the school's accounts (`[web.oidc]`) against a real OpenID provider on loopback
//! (node's `oidc-provider`, tests/oidc/provider.mjs): the login page's link, the authorization
//! request (code, PKCE S256, state, nonce, the configured redirect URI), the roles from the ID
//! token's groups and app roles, and every refusal — a forged state, a replayed callback, a
//! replayed code, an ID token for another audience, an expired one, one signed with another
//! key, one of another hosted domain (`hd`), and a person in no configured group (audited). Local accounts keep working, and an
//! unreachable issuer leaves the gateway running.

mod common;

use common::http::Browser;
use common::oidc::{self, Jar, Provider, follow_until, get, location, query_param};
use common::{Gateway, free_port, set};

const PASSWORD: &str = "correct horse battery staple";

struct Setup {
    gw: Gateway,
    provider: Provider,
    web: String,
    redirect: String,
}

/// A provider and a gateway whose `[web.oidc]` points at it; the callback is at a path of the
/// config's choosing (`/sso/return`), not only the usual one.
fn setup() -> Setup {
    let web_port = free_port();
    let web = format!("http://127.0.0.1:{web_port}");
    let redirect = format!("{web}/sso/return");
    let provider = Provider::start(&redirect, "127.0.0.1");
    let issuer = provider.issuer.clone();
    let redirect_url = redirect.clone();
    let gw = Gateway::start(move |cfg| {
        set(cfg, "web.listen", format!("127.0.0.1:{web_port}"));
        let dir = std::env::temp_dir().join(format!("schoolgate-oidc-{web_port}"));
        std::fs::create_dir_all(&dir).expect("a folder for the client secret");
        let table = oidc::config_table(&dir, &issuer, &redirect_url);
        cfg.get_mut("web")
            .and_then(|w| w.as_table_mut())
            .expect("[web]")
            .insert("oidc".into(), table);
    });
    gw.add_user("netman", &["network-manager"], PASSWORD);
    Setup {
        gw,
        provider,
        web,
        redirect,
    }
}

impl Setup {
    /// Starts a sign-in at the gateway; returns the provider's authorization URL.
    fn start(&self, jar: &mut Jar) -> String {
        let start = format!("{}/login/oidc", self.web);
        let r = get(jar, &start);
        assert_eq!(r.status, 303, "{}", r.text());
        location(&start, &r)
    }

    /// Signs `account` in at the provider; returns the callback URL it sends the browser to.
    fn at_provider(&self, jar: &mut Jar, account: &str) -> String {
        let authorize = self.start(jar);
        follow_until(
            jar,
            &format!("{authorize}&login_hint={account}"),
            &self.redirect,
        )
    }

    /// The whole sign-in of `account`: the gateway's answer to the callback.
    fn sign_in(&self, account: &str) -> (Jar, common::http::Response) {
        let mut jar = Jar::default();
        let back = self.at_provider(&mut jar, account);
        let r = get(&mut jar, &back);
        (jar, r)
    }

    fn authority(&self) -> String {
        self.web.trim_start_matches("http://").to_string()
    }
}

#[test]
fn signing_in_with_the_schools_accounts_gives_the_configured_roles_and_refuses_the_rest() {
    let s = setup();
    let gw = &s.gw;

    // The login page offers the provider (named by its host here) and local accounts.
    let page = Browser::new(gw.web_port()).get("/login");
    let text = page.text();
    assert!(text.contains("href=\"/login/oidc\""), "{text}");
    assert!(text.contains("Sign in with 127.0.0.1"), "{text}");
    assert!(text.contains("name=\"password\""));

    // The authorization request, as the discovery document's authorization_endpoint says.
    let mut jar = Jar::default();
    let authorize = s.start(&mut jar);
    assert!(
        authorize.starts_with(&format!("{}/auth?", s.provider.issuer)),
        "{authorize}"
    );
    assert_eq!(
        query_param(&authorize, "response_type").as_deref(),
        Some("code")
    );
    assert_eq!(
        query_param(&authorize, "client_id").as_deref(),
        Some("schoolgate")
    );
    assert_eq!(
        query_param(&authorize, "redirect_uri").as_deref(),
        Some(s.redirect.as_str())
    );
    assert_eq!(
        query_param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let challenge = query_param(&authorize, "code_challenge").expect("a code_challenge");
    assert_eq!(challenge.len(), 43, "a base64url SHA-256: {challenge}");
    let state = query_param(&authorize, "state").expect("a state");
    let nonce = query_param(&authorize, "nonce").expect("a nonce");
    assert!(state.len() >= 16 && nonce.len() >= 16 && state != nonce);
    assert!(
        query_param(&authorize, "scope").is_some_and(|sc| sc.split(' ').any(|x| x == "openid"))
    );

    // Happy path: alice is in grp-netman, so a network manager.
    let (mut jar, r) = s.sign_in("alice");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("url=/quarantine"), "{}", r.text());
    let session = jar
        .get(&s.authority(), "schoolgate_session")
        .expect("a session cookie")
        .to_string();
    let q = get(&mut jar, &format!("{}/quarantine", s.web));
    assert_eq!(q.status, 200);
    assert!(q.text().contains("alice@school.example"));
    assert_eq!(
        get(&mut jar, &format!("{}/flags", s.web)).status,
        403,
        "a network manager only"
    );
    // Like a local session: a POST needs its CSRF token.
    let mut b = Browser::new(gw.web_port());
    b.cookie = Some(format!("schoolgate_session={session}"));
    assert_eq!(b.post("/logout", &[("csrf", "forged")]).status, 403);
    let csrf = q.csrf().expect("the page's csrf");
    assert_eq!(b.post("/logout", &[("csrf", &csrf)]).status, 303);
    assert_eq!(get(&mut jar, &format!("{}/quarantine", s.web)).status, 303);

    // dana has the app role Schoolgate.DSL.
    let (mut jar, r) = s.sign_in("dana");
    assert!(r.text().contains("url=/flags"), "{}", r.text());
    assert_eq!(get(&mut jar, &format!("{}/flags", s.web)).status, 200);

    // A replayed callback (the same state): refused.
    let mut jar = Jar::default();
    let back = s.at_provider(&mut jar, "alice");
    assert_eq!(get(&mut jar, &back).status, 200);
    let r = get(&mut jar, &back);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("used already"), "{}", r.text());
    // A replayed code, under a new sign-in's state: the provider refuses it.
    let code = query_param(&back, "code").expect("a code");
    let mut other = Jar::default();
    let fresh = s.start(&mut other);
    let new_state = query_param(&fresh, "state").expect("a state");
    let replay = format!("{}?code={code}&state={new_state}", s.redirect);
    let r = get(&mut other, &replay);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("did not accept this sign-in"),
        "{}",
        r.text()
    );

    // A forged state, and a real state from another browser: refused, nothing exchanged.
    let mut jar = Jar::default();
    let back = s.at_provider(&mut jar, "alice");
    let code = query_param(&back, "code").expect("a code");
    let forged = format!("{}?code={code}&state=forged-state-0123456789", s.redirect);
    let r = get(&mut jar, &forged);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("not started from this browser"));
    let r = get(&mut Jar::default(), &back);
    assert_eq!(r.status, 403, "another browser");
    assert_eq!(get(&mut jar, &back).status, 200, "the real one still works");

    // ID tokens the provider's keys signed with the wrong audience or an hour-old expiry, and
    // one signed by a key the provider never published.
    for (account, why) in [
        ("wrong-aud", "another application"),
        ("expired", "expired"),
        ("forged", "signature"),
    ] {
        let (mut jar, r) = s.sign_in(account);
        assert_eq!(r.status, 403, "{account}: {}", r.text());
        assert!(r.text().contains(why), "{account}: {}", r.text());
        assert!(jar.get(&s.authority(), "schoolgate_session").is_none());
        assert_eq!(get(&mut jar, &format!("{}/quarantine", s.web)).status, 303);
    }

    // Of another hosted domain (Google's hd), though in the group: refused, and audited.
    let (_, r) = s.sign_in("outsider");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("is not the school"), "{}", r.text());

    // In no configured group: refused, and audited.
    let (_, r) = s.sign_in("nobody");
    assert_eq!(r.status, 403);
    assert!(
        r.text()
            .contains("nobody@school.example may not use schoolgate"),
        "{}",
        r.text()
    );

    // Local accounts stay.
    assert_eq!(
        Browser::new(gw.web_port()).login("netman", PASSWORD).status,
        303
    );

    let records = gw.audit_records();
    let logins: Vec<&common::AuditRow> = records.iter().filter(|r| r.kind == "login").collect();
    assert!(
        logins
            .iter()
            .any(|r| r.record_json.contains("alice@school.example")
                && r.record_json.contains("OpenID Connect")
                && r.record_json.contains("network-manager"))
    );
    assert!(
        logins
            .iter()
            .any(|r| r.record_json.contains("dana@school.example"))
    );
    let refused: Vec<&common::AuditRow> = records
        .iter()
        .filter(|r| r.kind == "login-failed")
        .collect();
    assert!(
        refused
            .iter()
            .any(|r| r.record_json.contains("nobody@school.example")
                && r.record_json.contains("in none of the groups"))
    );
    for why in [
        "another application",
        "expired",
        "signature",
        "elsewhere.example",
    ] {
        assert!(
            refused.iter().any(|r| r.record_json.contains(why)),
            "{why} audited"
        );
    }
    gw.assert_audit_verifies("after the sign-ins");
}

#[test]
fn an_unreachable_issuer_leaves_the_gateway_running_and_local_accounts_working() {
    let dead = free_port();
    let gw = Gateway::start(move |cfg| {
        let dir = std::env::temp_dir().join(format!("schoolgate-oidc-dead-{dead}"));
        std::fs::create_dir_all(&dir).expect("a folder for the client secret");
        let table = oidc::config_table(
            &dir,
            &format!("http://127.0.0.1:{dead}"),
            "https://schoolgate.school.example/login/oidc/callback",
        );
        cfg.get_mut("web")
            .and_then(|w| w.as_table_mut())
            .expect("[web]")
            .insert("oidc".into(), table);
    });
    gw.add_user("netman", &["network-manager"], PASSWORD);
    let port = gw.web_port();
    assert_eq!(Browser::new(port).login("netman", PASSWORD).status, 303);
    let r = Browser::new(port).get("/login/oidc");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("not available now"), "{}", r.text());
    assert!(r.text().contains("schoolgate account"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !gw.log().contains("is not available") {
        assert!(
            std::time::Instant::now() < deadline,
            "the log says nothing of the issuer: {}",
            gw.log_tail(4000)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(gw.log().contains("local accounts log in"));
}
