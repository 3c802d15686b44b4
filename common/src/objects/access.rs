//! Who may call a channel, and how often: rate limits (token buckets with a burst) and
//! address rules (CIDR lists), as channels and security definitions declare them.
//!
//! ```yaml
//! channels:
//!   - {name: orders, type: http, service: orders.create, url_path: /orders,
//!      rate_limit: {rate: 100, per: second, burst: 200},          # the whole channel
//!      rate_limit_per_address:                                    # per client address
//!        [{from: 10.0.0.0/8, rate: 1000, per: minute}, {from: 0.0.0.0/0, rate: 60, per: minute}],
//!      allow_from: [10.0.0.0/8, 192.168.0.0/16], deny_from: [10.6.6.0/24]}
//! security:
//!   - {name: partner, type: basic_auth, username: partner, password: "...",
//!      rate_limit: {rate: 10, per: second}}                        # per credential
//! ```

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The unit of a rate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    #[default]
    Second,
    Minute,
    Hour,
}

impl Per {
    /// The period in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
        }
    }
}

/// A token bucket: `rate` calls per `per`, with room for `burst` at once (default: `rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Calls per period, refilled evenly.
    pub rate: u32,
    #[serde(default)]
    pub per: Per,
    /// Calls allowed at once (the bucket's size); default `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl RateLimit {
    /// The bucket's size.
    pub fn capacity(&self) -> u32 {
        self.burst.unwrap_or(self.rate).max(1)
    }

    /// Seconds one call's token takes to come back.
    pub fn interval(&self) -> f64 {
        self.per.seconds() as f64 / f64::from(self.rate.max(1))
    }

    pub fn validate(&self, what: &str) -> Result<(), String> {
        if self.rate == 0 {
            return Err(format!("{what}: rate must be at least 1"));
        }
        if self.burst == Some(0) {
            return Err(format!("{what}: burst must be at least 1"));
        }
        Ok(())
    }

    /// `RateLimit-Policy` of the IETF draft: `q` calls in a window of `w` seconds.
    pub fn policy(&self, name: &str) -> String {
        format!(
            "\"{name}\";q={};w={}",
            self.capacity(),
            (f64::from(self.capacity()) * self.interval()).ceil() as u64
        )
    }
}

/// A rate for the client addresses in `from` (counted per address); the first rule whose
/// range holds the address applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRate {
    /// A CIDR range (`10.0.0.0/8`, `::/0`) or a single address.
    pub from: String,
    pub rate: u32,
    #[serde(default)]
    pub per: Per,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl AddressRate {
    /// The rate as a [`RateLimit`].
    pub fn limit(&self) -> RateLimit {
        RateLimit {
            rate: self.rate,
            per: self.per,
            burst: self.burst,
        }
    }
}

/// One take of `cost` tokens from a bucket of `capacity` refilled one token per
/// `interval` (all in milliseconds): the generic cell rate algorithm, keeping one number
/// per bucket, its theoretical arrival time `tat` (None: a full bucket). `Ok((new tat,
/// tokens left))` or `Err(milliseconds until it would succeed)`. The same arithmetic runs
/// in the gateway (limits per gateway), the KVDB proxy's memory and, as a script, Redis.
pub fn gcra(
    tat: Option<u64>,
    now: u64,
    interval: u64,
    capacity: u32,
    cost: u32,
) -> Result<(u64, u32), u64> {
    let interval = interval.max(1);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(interval.saturating_mul(u64::from(cost)));
    let window = interval.saturating_mul(u64::from(capacity.max(1)));
    let allow_at = new_tat.saturating_sub(window);
    if allow_at > now {
        return Err(allow_at - now);
    }
    let left = window.saturating_sub(new_tat - now) / interval;
    Ok((new_tat, u32::try_from(left).unwrap_or(u32::MAX)))
}

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Reads `10.0.0.0/8`, `2001:db8::/32` or a single address.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{text}' is not an address range (CIDR, e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}': the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parses a list of ranges, naming the bad one.
pub fn cidrs(list: &[String], what: &str) -> Result<Vec<Cidr>, String> {
    list.iter()
        .map(|c| Cidr::parse(c).map_err(|e| format!("{what}: {e}")))
        .collect()
}

/// A channel's rules of access, as it declares them.
#[derive(Debug, Clone, Copy)]
pub struct AccessRules<'a> {
    pub rate_limit: Option<&'a RateLimit>,
    pub per_address: &'a [AddressRate],
    pub allow_from: &'a [String],
    pub deny_from: &'a [String],
}

impl AccessRules<'_> {
    pub fn validate(&self, channel: &str) -> Result<(), String> {
        if let Some(r) = self.rate_limit {
            r.validate(&format!("channel {channel}: rate_limit"))?;
        }
        for r in self.per_address {
            Cidr::parse(&r.from)
                .map_err(|e| format!("channel {channel}: rate_limit_per_address: {e}"))?;
            r.limit()
                .validate(&format!("channel {channel}: rate_limit_per_address"))?;
        }
        cidrs(self.allow_from, &format!("channel {channel}: allow_from"))?;
        cidrs(self.deny_from, &format!("channel {channel}: deny_from"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let net = Cidr::parse("10.0.0.0/8").expect("v4");
        assert!(net.contains("10.1.2.3".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.0.0.1".parse().expect("mapped")));
        let all = Cidr::parse("0.0.0.0/0").expect("all");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        let one = Cidr::parse("127.0.0.2").expect("host");
        assert!(one.contains("127.0.0.2".parse().expect("ip")));
        assert!(!one.contains("127.0.0.3".parse().expect("ip")));
        let v6 = Cidr::parse("2001:db8::/32").expect("v6");
        assert!(v6.contains("2001:db8::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        assert!(
            Cidr::parse("::/0")
                .expect("all v6")
                .contains("::1".parse().expect("ip"))
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0/8", "1.2.3.4/x", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gcra_is_a_token_bucket() {
        // Capacity 3, one token a second: three at once, then one a second.
        let mut tat = None;
        let mut taken = 0;
        for _ in 0..5 {
            match gcra(tat, 10_000, 1000, 3, 1) {
                Ok((t, _)) => {
                    tat = Some(t);
                    taken += 1;
                }
                Err(wait) => assert!(wait > 0 && wait <= 1000),
            }
        }
        assert_eq!(taken, 3);
        assert!(gcra(tat, 10_999, 1000, 3, 1).is_err());
        let (t, left) = gcra(tat, 11_000, 1000, 3, 1).expect("one more after a second");
        assert_eq!(left, 0);
        // Idle long enough: full again.
        assert_eq!(gcra(Some(t), 60_000, 1000, 3, 1).map(|(_, l)| l), Ok(2));
    }

    #[test]
    fn limits() {
        let r = RateLimit {
            rate: 10,
            per: Per::Second,
            burst: Some(20),
        };
        assert_eq!(r.capacity(), 20);
        assert!((r.interval() - 0.1).abs() < 1e-9);
        assert_eq!(r.policy("channel"), "\"channel\";q=20;w=2");
        assert!(
            RateLimit {
                rate: 0,
                per: Per::Minute,
                burst: None
            }
            .validate("x")
            .is_err()
        );
    }
}
