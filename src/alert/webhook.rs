//! The generic JSON webhook sink.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::AlertMessage;
use crate::config::Secret;
use crate::detect::AlertEvent;

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: a timeout, a refused connection, a 5xx or a 429.
    #[error("{0}")]
    Retryable(String),
    /// Not worth retrying: a 3xx or 4xx answer, or a payload that cannot be built.
    #[error("{0}")]
    Permanent(String),
}

/// POSTs each alert as JSON to a URL, retrying transient failures with jittered backoff.
#[derive(Debug)]
pub struct WebhookSink {
    name: String,
    url: Secret,
    client: reqwest::Client,
    max_retries: usize,
    min_backoff: Duration,
}

impl WebhookSink {
    /// A sink posting to `url`. Redirects are not followed (a redirect usually means a wrong
    /// URL, and following one is an SSRF risk); every request has connect and total timeouts.
    pub fn new(
        name: String,
        url: Secret,
        timeout: Duration,
        max_retries: usize,
        min_backoff: Duration,
    ) -> Result<Self, DeliveryError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("skewtail/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                DeliveryError::Permanent(format!("cannot build HTTP client: {}", e.without_url()))
            })?;
        Ok(WebhookSink { name, url, client, max_retries, min_backoff })
    }

    /// The sink's name from the config (never its URL, which is a secret).
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn post_once(&self, body: &[u8], fingerprint: &str) -> Result<(), DeliveryError> {
        let response = self
            .client
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", fingerprint)
            .body(body.to_vec())
            .send()
            .await
            // `without_url`: reqwest errors print the URL, and webhook URLs are secrets.
            .map_err(|e| DeliveryError::Retryable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(DeliveryError::Retryable(format!("receiver answered {status}")))
        } else {
            Err(DeliveryError::Permanent(format!(
                "receiver answered {status}; check the URL and the receiver's configuration"
            )))
        }
    }

    /// Delivers one alert, retrying transient failures.
    pub async fn deliver(&self, event: &AlertEvent) -> Result<(), DeliveryError> {
        let message = AlertMessage::new(event);
        let body =
            serde_json::to_vec(&message).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(self.max_retries)
            .with_jitter();
        (|| self.post_once(&body, &message.fingerprint))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, DeliveryError::Retryable(_)))
            .notify(|error, delay| {
                tracing::warn!(message = "Webhook delivery failed; retrying.", sink = %self.name, %error, retry_in_ms = delay.as_millis());
            })
            .await
    }
}
