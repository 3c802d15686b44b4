//! Switches for the hot path's optimisations, to measure each one against the code
//! without it in the same run (`bench/run --b-env SHOAL_LEVERS_OFF=...`).
//!
//! `SHOAL_LEVERS_OFF` is a comma-separated list of levers to switch off; unset (the
//! default) means every lever is on. It is read once per process. Nothing here changes
//! what a caller sees, only how much CPU an answer costs:
//!
//! | lever | what it does when on |
//! |---|---|
//! | `frames` | a co-located executor is called in frames on its framed socket (`crate::frames`), not over gRPC |
//! | `hop` | a gateway reaches a co-located executor over its own HTTP/2 connection on the Unix socket, not through tonic's buffered `Channel` (when `frames` is off) |
//! | `gc` | CPython's cyclic garbage collector is paused while a JSON payload is turned into Python objects |
//! | `keys` | object keys repeated within one payload become one Python string each (as CPython's `json` does) |

use std::sync::OnceLock;

/// One optimisation of the hot path that can be switched off for an A/B measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lever {
    Frames,
    Hop,
    Gc,
    Keys,
}

impl Lever {
    fn name(self) -> &'static str {
        match self {
            Lever::Frames => "frames",
            Lever::Hop => "hop",
            Lever::Gc => "gc",
            Lever::Keys => "keys",
        }
    }
}

/// Whether `lever` is on in this process (every lever is, unless `SHOAL_LEVERS_OFF`
/// names it).
pub fn on(lever: Lever) -> bool {
    static OFF: OnceLock<Vec<String>> = OnceLock::new();
    let off = OFF.get_or_init(|| {
        std::env::var("SHOAL_LEVERS_OFF")
            .map(|v| parse(&v))
            .unwrap_or_default()
    });
    !off.iter().any(|n| n == lever.name() || n == "all")
}

fn parse(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_a_list() {
        assert_eq!(super::parse(" Hop, gc,,"), vec!["hop", "gc"]);
        assert!(super::parse("").is_empty());
    }
}
