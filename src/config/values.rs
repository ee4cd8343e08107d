//! Parsers for the scalar formats the YAML uses: slugs, durations, addresses, times.
//! Each returns a plain error message; `compile` attaches the rule id and position.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Serialize, Serializer};

pub fn check_slug(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{s}` is not a slug: lowercase letters, digits and '-', starting with a letter or digit, at most 63"))
    }
}

/// A duration written as `<n><unit>` with unit ms, s, m, h or d; serialized back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn parse(s: &str) -> Result<Dur, String> {
        let err = || format!("`{s}` is not a duration like 500ms, 30s, 5m, 1h or 1d");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| err())?;
        let ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        n.checked_mul(ms)
            .filter(|&v| v <= 365 * 86_400_000)
            .map(|v| Dur(Duration::from_millis(v)))
            .ok_or_else(|| format!("`{s}` is longer than a year"))
    }

    pub fn secs(secs: u64) -> Dur {
        Dur(Duration::from_secs(secs))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms != 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A JSON path of object keys only, `$.a.b`: where a value sits in an SMS gateway's answer or
/// delivery report. Deliberately minimal and strict — no arrays, wildcards or quoting — so a
/// path means one thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<String>);

impl JsonPath {
    pub fn parse(s: &str) -> Result<JsonPath, String> {
        let err = || {
            format!(
                "`{s}` is not a JSON path like `$.msg_id` or `$.result.id` (`$.` and keys of letters, digits, `_` and `-`, split by `.`)"
            )
        };
        let keys = s.strip_prefix("$.").ok_or_else(err)?;
        let keys: Vec<String> = keys.split('.').map(str::to_string).collect();
        let key_ok = |k: &String| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if keys.iter().all(key_ok) { Ok(JsonPath(keys)) } else { Err(err()) }
    }

    /// The string or number at this path in `value`, as text; `None` when a key is missing or
    /// the value there is anything else (an object, an array, a boolean, null).
    pub fn get(&self, value: &serde_json::Value) -> Option<String> {
        let found = self.0.iter().try_fold(value, |v, key| v.get(key))?;
        match found {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$.{}", self.0.join("."))
    }
}

impl Serialize for JsonPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

pub fn check_email(s: &str) -> Result<(), String> {
    let err = || format!("`{s}` is not a valid e-mail address");
    let (local, domain) = s.rsplit_once('@').ok_or_else(err)?;
    let local_ok =
        !local.is_empty() && local.len() <= 64 && !local.contains(|c: char| c.is_whitespace() || c == '@' || c == '<' || c == '>');
    if local_ok && check_hostname(domain).is_ok() && domain.contains('.') { Ok(()) } else { Err(err()) }
}

/// Normalise a phone number to E.164 (`+` and 8–15 digits) after removing separators.
pub fn normalize_phone(s: &str) -> Result<String, String> {
    let compact: String = s.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    let digits = compact.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0') {
        Ok(compact)
    } else {
        Err(format!("`{s}` is not an E.164 phone number (`+` country code and number, e.g. +82-10-1234-5678)"))
    }
}

pub fn check_hostname(s: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !s.is_empty() && s.len() <= 253 && s.trim_end_matches('.').split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("`{s}` is neither an IP address nor a valid host name"))
    }
}

/// A monitored host: an IP literal (subject to approved networks) or a DNS name.
pub fn parse_host(s: &str) -> Result<Option<IpAddr>, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Some(ip));
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("`{s}` is not a valid IP address"));
    }
    check_hostname(s).map(|()| None)
}

pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("`{s}` is not a valid IP address"))
}

/// An address range, `203.0.113.0/24`; a bare address is a single-host range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("`{s}` is not a CIDR range like 203.0.113.0/24"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(|| format!("`{s}`: prefix length must be 0–{max}"))?,
            None => max,
        };
        let cidr = Cidr { addr, prefix };
        let network = cidr.network();
        if network != addr {
            return Err(format!("`{s}` has host bits set; the range is {network}/{prefix}"));
        }
        Ok(cidr)
    }

    fn bits(ip: IpAddr) -> (u128, u32) {
        match ip {
            IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    fn mask(width: u32, prefix: u8) -> u128 {
        if prefix == 0 { 0 } else { (u128::MAX << (width - prefix as u32)) & (u128::MAX >> (128 - width)) }
    }

    fn network(&self) -> IpAddr {
        let (bits, width) = Self::bits(self.addr);
        let net = bits & Self::mask(width, self.prefix);
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4((net as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(net.into()),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, width) = Self::bits(self.addr);
        let (bits, other_width) = Self::bits(ip);
        width == other_width && (bits & Self::mask(width, self.prefix)) == net
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `HH:MM` as minutes after midnight; `24:00` allowed as an end.
pub fn parse_clock(s: &str) -> Result<u16, String> {
    let err = || format!("`{s}` is not a time of day like 09:00");
    let (h, m) = s.split_once(':').ok_or_else(err)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(err());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| err())?, m.parse().map_err(|_| err())?);
    if m < 60 && (h < 24 || (h == 24 && m == 0)) { Ok(h * 60 + m) } else { Err(err()) }
}

/// `HH:MM-HH:MM`; may wrap midnight (`22:00-06:00`).
pub fn parse_hours(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("`{s}` is not an hour range like 09:00-22:00"))?;
    let (from, to) = (parse_clock(a.trim())?, parse_clock(b.trim())?);
    if from == to {
        return Err(format!("`{s}` is an empty range; omit `hours` for all day"));
    }
    Ok((from, to))
}

pub fn check_sha256(s: &str) -> Result<(), String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err("expected a SHA-256 as 64 hex digits (`watchkeeper token` prints one)".into())
    }
}

pub fn check_http_url(s: &str) -> Result<(), String> {
    if s.contains("${") {
        return Ok(()); // expanded by serve from its environment
    }
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("`{s}` is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() { Err(format!("`{s}` has no host")) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_are_object_keys_only_and_read_strings_or_numbers() {
        let answer = serde_json::json!({"msg_id": "gw-1", "result": {"id": 42, "ok": true, "list": ["x"]}});
        let get = |path: &str| JsonPath::parse(path).unwrap().get(&answer);
        assert_eq!(get("$.msg_id").as_deref(), Some("gw-1"));
        assert_eq!(get("$.result.id").as_deref(), Some("42"));
        assert_eq!(get("$.result.ok"), None, "a boolean is no id");
        assert_eq!(get("$.result.list"), None);
        assert_eq!(get("$.missing.id"), None);
        assert_eq!(JsonPath::parse("$.result.id").unwrap().to_string(), "$.result.id");
        for bad in ["", "$", "$.", "msg_id", "$..a", "$.a.", "$.a[0]", "$.*", "$.a b", "$['a']"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_round_trip_and_reject_junk() {
        for (text, ms) in [("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000), ("0s", 0)] {
            assert_eq!(Dur::parse(text).unwrap().0.as_millis(), ms, "{text}");
        }
        assert_eq!(Dur::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(Dur::parse("120s").unwrap().to_string(), "2m");
        for bad in ["", "5", "m", "5 m", "5min", "-5s", "1.5h", "999999d"] {
            assert!(Dur::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_containment_and_host_bits() {
        let net = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(net.contains("203.0.113.10".parse().unwrap()));
        assert!(!net.contains("203.0.114.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1/16").unwrap_err().contains("10.0.0.0/16"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32").unwrap().contains("2001:db8::1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.1.2.3").unwrap().prefix, 32);
    }

    #[test]
    fn phones_emails_slugs_hosts() {
        assert_eq!(normalize_phone("+82-10-1234-5678").unwrap(), "+821012345678");
        assert!(normalize_phone("010-1234-5678").is_err());
        assert!(check_email("alice@example.com").is_ok());
        for bad in ["alice", "alice@", "@example.com", "a b@example.com", "alice@localhost"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_slug("web-01").is_ok());
        for bad in ["Web", "-web", "web_01", "", &"a".repeat(64)] {
            assert!(check_slug(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_host("10.0.0.1").unwrap(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_host("db.example.com").unwrap(), None);
        assert!(parse_host("10.0.0.300").is_err());
        assert!(parse_host("bad host").is_err());
    }

    #[test]
    fn clock_ranges() {
        assert_eq!(parse_hours("09:00-22:00").unwrap(), (540, 1320));
        assert_eq!(parse_hours("22:00-06:00").unwrap(), (1320, 360));
        assert!(parse_hours("9-22").is_err());
        assert!(parse_hours("25:00-01:00").is_err());
        assert!(parse_hours("10:00-10:00").is_err());
    }
}
