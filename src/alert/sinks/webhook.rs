//! The generic JSON webhook, signed as the Standard Webhooks spec says: `webhook-id` (one per
//! message, the same on every retry), `webhook-timestamp`, and `webhook-signature`
//! (`v1,` + base64 HMAC-SHA256 over `id.timestamp.body`, keyed with the `whsec_` secret).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::alert::notice::{Notice, Status};

/// The body: an envelope with every notice of the message.
pub fn render(id: &str, notices: &[Notice], test: bool) -> Value {
    let status = if notices.iter().any(|n| n.status == Status::Firing) {
        "firing"
    } else if notices.iter().all(|n| n.status == Status::Noted) {
        "noted"
    } else {
        "resolved"
    };
    let alerts: Vec<Value> = notices
        .iter()
        .map(|n| {
            let mut alert = super::bounded_strings(&n.details, 1024);
            if let Value::Object(map) = &mut alert {
                map.insert("key".into(), json!(n.key));
                map.insert("reminder".into(), json!(n.repeat));
            }
            alert
        })
        .collect();
    json!({ "type": "notification", "id": id, "status": status, "test": test, "alerts": alerts })
}

/// Decodes a `whsec_<base64>` secret (a bare base64 secret is accepted too).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.trim().strip_prefix("whsec_").unwrap_or(secret.trim());
    let key = BASE64
        .decode(encoded)
        .map_err(|_| "the signing secret must be `whsec_` followed by base64".to_string())?;
    if key.len() < 24 {
        return Err(format!(
            "the signing secret has {} bytes; use at least 24 random bytes",
            key.len()
        ));
    }
    Ok(key)
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_test_vector() {
        // From the Standard Webhooks reference libraries' tests.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(decode_secret("whsec_c2hvcnQ=").unwrap_err().contains("at least 24"));
        assert!(decode_secret("whsec_!!!").is_err());
    }
}
