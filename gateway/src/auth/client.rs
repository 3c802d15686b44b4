//! Who is on the other end of a request: the client's address — the TCP peer, or, when
//! the peer is one of the gateway's `trusted_proxies`, the address those proxies report
//! in `Forwarded` or `X-Forwarded-For` (read from the right, past every trusted hop) —
//! and its TLS certificate, if it sent one.

use std::net::IpAddr;

use http::HeaderMap;
use shoal_common::objects::access::Cidr;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// From CIDR ranges (an error names the bad one).
    pub fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        shoal_common::objects::access::cidrs(list, "trusted_proxies").map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address for a request from `peer`.
    pub fn client_ip(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        // The hops the proxies appended, nearest last: the first one from the right that
        // is not a trusted proxy is the client (anything left of it the client could have
        // written itself).
        let hops = forwarded_hops(headers);
        for hop in hops.iter().rev() {
            if !self.trusts(*hop) {
                return *hop;
            }
        }
        hops.first().copied().unwrap_or(peer)
    }
}

/// The addresses of `Forwarded: for=...` (RFC 7239), else of `X-Forwarded-For`, in order.
fn forwarded_hops(headers: &HeaderMap) -> Vec<IpAddr> {
    let mut hops = Vec::new();
    for v in headers.get_all("forwarded") {
        let Ok(v) = v.to_str() else { continue };
        for element in v.split(',') {
            for pair in element.split(';') {
                let Some((k, val)) = pair.trim().split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("for")
                    && let Some(ip) = parse_node(val.trim().trim_matches('"'))
                {
                    hops.push(ip);
                }
            }
        }
    }
    if !hops.is_empty() {
        return hops;
    }
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else { continue };
        hops.extend(v.split(',').filter_map(|h| parse_node(h.trim())));
    }
    hops
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:4711`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':')
        .and_then(|(host, port)| port.parse::<u16>().ok().and(host.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into()]).expect("cidr");
        let peer: IpAddr = "10.0.0.5".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        let xff = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.4")]);
        assert_eq!(
            t.client_ip(&xff, peer),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        // From a peer that is not a proxy, the header is the client's own words.
        assert_eq!(t.client_ip(&xff, stranger), stranger);
        let fwd = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=https, for=\"[2001:db8::1]:4711\"",
        )]);
        assert_eq!(
            t.client_ip(&fwd, peer),
            "2001:db8::1".parse::<IpAddr>().expect("ip")
        );
        // No header: the peer itself.
        assert_eq!(t.client_ip(&HeaderMap::new(), peer), peer);
        // Every hop trusted: the leftmost.
        let inner = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(
            t.client_ip(&inner, peer),
            "10.1.1.1".parse::<IpAddr>().expect("ip")
        );
        assert!(TrustedProxies::parse(&["bogus".into()]).is_err());
        assert_eq!(parse_node("192.0.2.1:80"), "192.0.2.1".parse().ok());
        assert_eq!(parse_node("unknown"), None);
    }
}
