//! One HTTP attempt and what its answer means: delivered, try again (when), or give up (why).
//! Errors name their cause (connection refused, DNS, TLS, timeout, HTTP status and the
//! receiver's reason) and never the URL, which is a secret.

use std::time::Duration;

use crate::clock::Clock;

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver accepted it.
    Delivered {
        /// HTTP status.
        status: u16,
    },
    /// Worth trying again: a timeout, a refused connection, a 5xx, a 429.
    Retry {
        /// What happened, in words.
        cause: String,
        /// The metric label: `timeout`, `connection`, `dns`, `tls`, `rate_limited`,
        /// `server_error`.
        reason: &'static str,
        /// How long the receiver asked us to wait (`Retry-After`).
        after: Option<Duration>,
    },
    /// Not worth trying again: a 4xx other than 429, a redirect, a payload too large.
    Permanent {
        /// What happened, in words, with the receiver's reason.
        cause: String,
        /// The metric label: `client_error`, `auth_error`, `gone`, `redirect`.
        reason: &'static str,
        /// The endpoint itself is dead or refuses us (404, 410, 401/403): no later message
        /// will fare better.
        endpoint_dead: bool,
    },
}

impl Attempt {
    /// A short description for logs and `alert test`.
    pub fn describe(&self) -> String {
        match self {
            Attempt::Delivered { status } => format!("accepted ({status})"),
            Attempt::Retry { cause, .. } | Attempt::Permanent { cause, .. } => cause.clone(),
        }
    }
}

/// Whether a URL's host is this machine: a loopback address or `localhost`.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Only https, except on loopback (a local relay, a test receiver): alerts carry data from
/// the logs and the URL often carries a token.
pub fn check_url(url: &str, insecure_http: bool) -> Result<(), UrlError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| UrlError::Invalid(e.to_string()))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            if is_loopback(&parsed) || insecure_http {
                Ok(())
            } else {
                Err(UrlError::PlainHttp)
            }
        }
        other => Err(UrlError::Scheme(other.to_string())),
    }
}

/// A receiver URL skewtail will not send to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// It does not parse.
    #[error("not a valid URL ({0}); give the full https:// URL")]
    Invalid(String),
    /// Plain http to a host that is not loopback, without `insecure_http`.
    #[error(
        "the URL must use https:// (plain http:// is allowed only on loopback, or with `insecure_http = true` for a receiver on a trusted network such as an in-cluster Alertmanager)"
    )]
    PlainHttp,
    /// Neither https nor http.
    #[error("unsupported URL scheme `{0}`; use https://")]
    Scheme(String),
}

/// A client with connect and total timeouts, no redirects (a redirect usually means a wrong
/// URL, and following one is an SSRF risk) and rustls.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("skewtail/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One request to send: body and extra headers.
#[derive(Debug, Clone)]
pub struct Request {
    /// JSON body.
    pub body: Vec<u8>,
    /// Extra headers (names and values from safe characters only).
    pub headers: Vec<(&'static str, String)>,
    /// Where it goes, when not to the sink's URL (PagerDuty's change events).
    pub url: Option<String>,
}

/// Sends one request and classifies the answer. `ok_body`: a body the receiver must answer
/// with for success (Slack answers `ok`).
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    request: &Request,
    ok_body: Option<&str>,
    clock: Clock,
) -> Attempt {
    let mut builder = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let response = match builder.send().await {
        Ok(response) => response,
        Err(error) => return transport_failure(&error),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, clock.now_ms()));
    let body = response.text().await.unwrap_or_default();
    classify(status.as_u16(), &body, retry_after, ok_body)
}

/// What an HTTP answer means.
pub fn classify(
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
    ok_body: Option<&str>,
) -> Attempt {
    let reason_text = receiver_reason(body);
    match status {
        200..=299 => match ok_body {
            Some(expected) if body.trim() != expected => Attempt::Permanent {
                cause: format!("answered {status} but not `{expected}`: {reason_text}"),
                reason: "client_error",
                endpoint_dead: false,
            },
            _ => Attempt::Delivered { status },
        },
        429 => Attempt::Retry {
            cause: format!("rate limited (429){}", after_text(retry_after)),
            reason: "rate_limited",
            after: retry_after.or_else(|| slack_retry_after(body)),
        },
        500..=599 => Attempt::Retry {
            cause: format!("receiver error {status}: {reason_text}"),
            reason: "server_error",
            after: retry_after.filter(|_| status == 503),
        },
        408 => Attempt::Retry {
            cause: format!("receiver timed out (408): {reason_text}"),
            reason: "timeout",
            after: None,
        },
        300..=399 => Attempt::Permanent {
            cause: format!("answered a redirect ({status}), which is not followed; fix the URL"),
            reason: "redirect",
            endpoint_dead: true,
        },
        401 | 403 => Attempt::Permanent {
            cause: format!("refused ({status}): {reason_text}; check the token or key"),
            reason: "auth_error",
            endpoint_dead: true,
        },
        404 | 410 => Attempt::Permanent {
            cause: format!(
                "endpoint gone ({status}): {reason_text}; the webhook was probably deleted or archived"
            ),
            reason: "gone",
            endpoint_dead: true,
        },
        _ => Attempt::Permanent {
            cause: format!("refused ({status}): {reason_text}"),
            reason: "client_error",
            endpoint_dead: false,
        },
    }
}

fn after_text(after: Option<Duration>) -> String {
    after.map_or_else(String::new, |d| format!(", asked to wait {} s", d.as_secs()))
}

/// The receiver's reason from its body: a JSON `message`/`error`/`errors`, or the text
/// itself, cut short and stripped of control characters.
fn receiver_reason(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        let mut parts = Vec::new();
        for key in ["error", "message", "status"] {
            if let Some(text) = value.get(key).and_then(|v| v.as_str()) {
                parts.push(text.to_string());
            }
        }
        if let Some(errors) = value.get("errors").and_then(|v| v.as_array()) {
            parts.extend(errors.iter().filter_map(|e| e.as_str().map(str::to_string)));
        }
        if !parts.is_empty() {
            return crate::text::for_log(&parts.join("; "));
        }
    }
    let text = body.trim();
    if text.is_empty() { "(no body)".to_string() } else { crate::text::for_log(text) }
}

/// Slack's 429 body: `{"retry_after":1,"ok":false,"error":"rate_limited"}`.
fn slack_retry_after(body: &str) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("retry_after")?.as_u64().map(Duration::from_secs)
}

/// `Retry-After`: seconds, or an HTTP date (against `now_ms`). Capped at 10 minutes: a
/// receiver cannot park an alert for a day.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        let now = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
        at.duration_since(now).unwrap_or_default()
    };
    Some(wait.min(Duration::from_secs(600)))
}

/// Names the cause of a failed request: refused, DNS, TLS, timeout (never the URL).
fn transport_failure(error: &reqwest::Error) -> Attempt {
    let chain = {
        let mut text = Vec::new();
        let mut source: Option<&dyn std::error::Error> = Some(error);
        while let Some(e) = source {
            text.push(e.to_string().to_lowercase());
            source = e.source();
        }
        text.join(": ")
    };
    let (reason, cause) = if error.is_timeout() {
        ("timeout", "timed out waiting for the receiver")
    } else if chain.contains("connection refused") {
        ("connection", "connection refused (is the receiver running?)")
    } else if chain.contains("dns error")
        || chain.contains("failed to lookup")
        || chain.contains("name or service not known")
    {
        ("dns", "DNS lookup failed (check the host name)")
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake")
    {
        ("tls", "TLS failed (check the certificate and the https URL)")
    } else if chain.contains("connection reset")
        || chain.contains("broken pipe")
        || chain.contains("closed")
    {
        ("connection", "the connection was closed by the receiver")
    } else if error.is_connect() {
        ("connection", "cannot connect to the receiver")
    } else {
        ("connection", "request failed")
    };
    let detail = error.without_url_ref();
    Attempt::Retry { cause: format!("{cause}: {detail}"), reason, after: None }
}

/// `reqwest::Error::without_url` for a borrowed error.
trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        // The Display of a reqwest error with its URL removed: walk the sources instead.
        let mut parts = Vec::new();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            parts.push(e.to_string());
            source = e.source();
        }
        crate::text::for_log(&parts.join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_the_vendors_document_them() {
        assert_eq!(classify(200, "ok", None, Some("ok")), Attempt::Delivered { status: 200 });
        assert!(matches!(classify(200, "no_text", None, Some("ok")), Attempt::Permanent { .. }));
        assert!(matches!(
            classify(429, r#"{"retry_after":7,"ok":false,"error":"rate_limited"}"#, None, None),
            Attempt::Retry { after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(429, "", Some(Duration::from_secs(3)), None),
            Attempt::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(503, "", None, None),
            Attempt::Retry { reason: "server_error", .. }
        ));
        let Attempt::Permanent { cause, endpoint_dead: false, .. } = classify(
            400,
            r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect"]}"#,
            None,
            None,
        ) else {
            panic!()
        };
        assert!(cause.contains("Length of 'routing_key' is incorrect"), "{cause}");
        assert!(matches!(
            classify(410, "channel_is_archived", None, None),
            Attempt::Permanent { endpoint_dead: true, .. }
        ));
        assert!(matches!(
            classify(302, "", None, None),
            Attempt::Permanent { reason: "redirect", .. }
        ));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now_ms = 1_700_000_000_000;
        assert_eq!(parse_retry_after("5", now_ms), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("86400", now_ms), Some(Duration::from_secs(600)));
        let soon = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_030_000),
        );
        assert_eq!(parse_retry_after(&soon, now_ms), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now_ms), None);
    }

    #[test]
    fn only_https_except_on_loopback() {
        assert!(check_url("https://hooks.slack.com/services/T/B/x", false).is_ok());
        assert!(check_url("http://127.0.0.1:9093/api/v2/alerts", false).is_ok());
        assert!(check_url("http://[::1]:80/", false).is_ok());
        assert!(check_url("http://localhost:80/", false).is_ok());
        assert_eq!(check_url("http://hooks.example.com/x", false), Err(UrlError::PlainHttp));
        assert!(check_url("ftp://x", false).is_err());
        assert!(check_url("http://alertmanager-0.monitoring:9093/", true).is_ok());
        assert!(check_url("not a url", false).is_err());
    }
}
