//! The HTTP stack shared by the Gmail client and the OAuth flows: hyper over rustls (ring,
//! bundled web PKI roots, so no system CA bundle is needed), plain http allowed so that tests
//! and the demo can talk to the Gmail-compatible server on loopback.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The client google-gmail1 wants (its boxed body type).
pub type ApiClient = google_gmail1::common::Client<Connector>;

/// The client the OAuth flows use (String bodies).
pub type OAuthClient = Client<Connector, String>;

/// Installs rustls' ring provider as the process default; later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn connector() -> Connector {
    install_crypto_provider();
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .expect("ring supports the default TLS versions")
        .https_or_http()
        .enable_http1()
        .build()
}

pub fn api_client() -> ApiClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector())
}

pub fn oauth_client() -> OAuthClient {
    Client::builder(TokioExecutor::new()).build(connector())
}
