//! Service-account keys the sandbox hands out, for the demo: a fresh RSA key per call, kept
//! nowhere but where the caller writes it (the repository holds no keys). The sandbox trusts
//! JWT signatures, so the key only has to be one a client can sign with.

use rsa::pkcs8::{EncodePrivateKey, LineEnding};

/// The JSON key file of a service account `client_email` whose tokens come from
/// `token_url`, in the shape the Google Cloud console downloads.
pub fn throwaway_service_account_key(
    token_url: &str,
    client_email: &str,
) -> Result<serde_json::Value, String> {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|error| format!("cannot make an RSA key: {error}"))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|error| format!("cannot encode the RSA key: {error}"))?;
    Ok(serde_json::json!({
        "type": "service_account",
        "project_id": "sandbox",
        "private_key_id": "throwaway",
        "private_key": pem.as_str(),
        "client_email": client_email,
        "client_id": "0",
        "token_uri": token_url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each call makes a new key, in a file yup-oauth2 reads as a service account's.
    #[test]
    fn every_key_is_new_and_readable_as_a_service_account_key() {
        let first =
            throwaway_service_account_key("http://127.0.0.1:1/token", "demo@sandbox.example")
                .expect("a key");
        let second =
            throwaway_service_account_key("http://127.0.0.1:1/token", "demo@sandbox.example")
                .expect("a key");
        assert_ne!(first["private_key"], second["private_key"]);
        assert!(
            first["private_key"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert_eq!(first["token_uri"], "http://127.0.0.1:1/token");
    }
}
