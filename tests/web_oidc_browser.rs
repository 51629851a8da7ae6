//! Sign-in with the school's accounts in a real headless Chromium, against the real OpenID
//! provider of tests/oidc/ on another site (`localhost` against the gateway's `127.0.0.1`), so
//! the browser's cross-site cookie rules apply as they do with Microsoft or Google: the person
//! clicks "Sign in with …", types their account at the provider, and lands on their page with a
//! working session. Screenshots: `oidc-login-*.png`, `oidc-provider-*.png`,
//! `oidc-signed-in-*.png` in `target/screenshots/`.

mod common;

use common::browser::Browser;
use common::oidc::{self, Provider};
use common::{Gateway, free_port, set};

#[test]
fn a_network_manager_signs_in_with_the_school_account_in_a_browser() {
    let web_port = free_port();
    let web = format!("http://127.0.0.1:{web_port}");
    let redirect = format!("{web}/login/oidc/callback");
    let provider = Provider::start(&redirect, "localhost");
    let issuer = provider.issuer.clone();
    let gw = Gateway::start(move |cfg| {
        set(cfg, "web.listen", format!("127.0.0.1:{web_port}"));
        let dir = std::env::temp_dir().join(format!("schoolgate-oidc-browser-{web_port}"));
        std::fs::create_dir_all(&dir).expect("a folder for the client secret");
        let mut table = oidc::config_table(&dir, &issuer, &redirect);
        if let Some(t) = table.as_table_mut() {
            t.insert("name".into(), "the Trust".into());
        }
        cfg.get_mut("web")
            .and_then(|w| w.as_table_mut())
            .expect("[web]")
            .insert("oidc".into(), table);
    });

    let mut b = Browser::start();
    b.set_base(web.clone());
    b.goto("/login");
    let button = b.find("#sign-in-oidc");
    assert_eq!(button.text(), "Sign in with the Trust");
    b.screenshots("oidc-login");
    button.click();

    // At the provider (another site): its own login form.
    b.wait_for("#login");
    b.screenshots("oidc-provider");
    b.fill("#login", "alice");
    b.click("#sign-in");

    // Back at the gateway, signed in, on the network manager's page.
    b.wait_for("#nav-quarantine");
    assert_eq!(b.path(), "/quarantine");
    assert!(b.text("header").contains("alice@school.example"));
    b.screenshots("oidc-signed-in");
    // The session is a real one: its pages open, and logging out ends it.
    b.goto("/quarantine");
    b.find("#nav-quarantine");
    b.click("#logout");
    b.wait_for("#sign-in-oidc");
    b.goto("/quarantine");
    b.wait_for("#sign-in-oidc");
    drop(gw);
}
