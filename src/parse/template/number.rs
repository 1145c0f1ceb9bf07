//! Values as balancers write them: numbers without allocation, `-` for unset, and nginx's
//! upstream lists.

/// Parses an unsigned decimal number (`0.050`, `12`, HAProxy's lower bound `+30`) without
/// allocation; exponent forms (`2.7e-06`, as some JSON encoders write) take the slower path.
#[inline]
pub(super) fn parse_decimal(bytes: &[u8]) -> Option<f64> {
    parse_plain_decimal(bytes).or_else(|| parse_exponent_decimal(bytes))
}

#[cold]
fn parse_exponent_decimal(bytes: &[u8]) -> Option<f64> {
    let value: f64 = std::str::from_utf8(bytes).ok()?.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[inline]
fn parse_plain_decimal(bytes: &[u8]) -> Option<f64> {
    let bytes = bytes.strip_prefix(b"+").unwrap_or(bytes);
    let (whole, fraction) = match memchr::memchr(b'.', bytes) {
        Some(dot) => (&bytes[..dot], &bytes[dot + 1..]),
        None => (bytes, &b""[..]),
    };
    if whole.is_empty() || whole.len() > 15 || fraction.len() > 9 {
        return None;
    }
    let value = parse_digits(whole)?;
    let frac = if fraction.is_empty() { 0 } else { parse_digits(fraction)? };
    const SCALE: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
    #[allow(clippy::cast_precision_loss)] // whole and fraction are capped at 15 and 9 digits
    Some(value as f64 + frac as f64 / SCALE[fraction.len()])
}

#[inline]
fn parse_digits(bytes: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    Some(value)
}

/// Parses an unsigned integer, allowing HAProxy's `+` lower-bound marker.
#[inline]
pub(super) fn parse_uint(bytes: &[u8]) -> Option<u64> {
    let bytes = bytes.strip_prefix(b"+").unwrap_or(bytes);
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    parse_digits(bytes)
}

/// Balancers write `-` for an unset value (and `""` under nginx `escape=json`); HAProxy writes
/// `-1` for a timer or status it never reached.
#[inline]
pub(super) fn is_unset(value: &[u8]) -> bool {
    value.is_empty() || value == b"-" || value == b"-1"
}

/// The last item of an upstream list (`a, b : c` gives `c`) and the number of items.
#[inline]
pub(super) fn last_list_item(value: &[u8]) -> (&[u8], u16) {
    let (last, _, n_items) = list_ends(value);
    (last, n_items)
}

/// The last and first items of an upstream list (`a, b : c` gives `c` and `a`) and the number
/// of items.
#[inline]
pub(super) fn list_ends(value: &[u8]) -> (&[u8], &[u8], u16) {
    // Nearly every request has one attempt: no separator at all.
    if memchr::memchr2(b',', b' ', value).is_none() {
        return (value, value, 1);
    }
    let mut n_items: u16 = 1;
    let mut last_start = 0;
    let mut first_end = value.len();
    for (i, &b) in value.iter().enumerate() {
        // `,` separates attempts within a group; ` : ` separates groups after an internal
        // redirect. A `:` inside `ip:port` or `unix:/path` has no space before it.
        let is_separator = b == b',' || (b == b':' && i > 0 && value[i - 1] == b' ');
        if is_separator {
            if n_items == 1 {
                first_end = i;
            }
            n_items = n_items.saturating_add(1);
            last_start = i + 1;
        }
    }
    (value[last_start..].trim_ascii(), value[..first_end].trim_ascii(), n_items)
}
