//! The scan every daemon test runs over its log: no mail content, contact address, token
//! or key may appear in it, at any level.

/// What must never be in a log: message content, contact addresses, tokens and keys. The
/// marker words come from the daemon tests' messages ("Secret subject", "Push subject")
/// and `tests/fixtures/logscan/`.
pub const NEVER_LOGGED: &[&str] = &[
    "Secret subject",
    "Push subject",
    "Body of message",
    "alice@customer.com",
    "bob@bigclient.io",
    "stranger@vendor.example",
    "ya29.",
    "1//sandbox-",
    "refresh_token",
    "PRIVATE KEY",
    "access_token",
    // tests/fixtures/logscan: subjects, body words (plain, HTML text, attributes), links and
    // their tokens, decoded words, attachment names.
    "zebracorn",
    "marzipanword",
    "quokkatitle",
    "gnomealt",
    "tracker.example",
    "LINKTOKEN123",
    "img.example",
    "tapirsubject",
    "okapiword",
    "ALTSIG999",
    "pangolin",
    "U2VjcmV0IHBhbmdvbGlu",
    "wombatword",
    "narwhalsubject",
    "axolotlword",
    "salary-review-ocelot",
];

/// The log holds none of [`NEVER_LOGGED`].
pub fn assert_nothing_private(log: &str) {
    for forbidden in NEVER_LOGGED {
        assert!(
            !log.contains(forbidden),
            "the log contains {forbidden:?}:\n{log}"
        );
    }
}

/// A daemon's log, written at trace in JSON, holds none of [`NEVER_LOGGED`], and its
/// debug lines were there to scan.
pub fn assert_log_is_clean(log: &str) {
    assert_nothing_private(log);
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "the scan covered debug lines"
    );
}
