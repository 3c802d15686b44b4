//! Fuzz targets: the decoders of untrusted input as functions of bytes that must never
//! panic, and that keep each decoder's promises (an error says something; what is
//! accepted is well-formed). Two drivers run them:
//!
//! - `fuzz/` (cargo-fuzz, libFuzzer, the nightly toolchain): coverage-guided, for as long
//!   as it is given — `fuzz/run` (docs/reliability.md);
//! - the unit test below, on stable, in CI: every file of the committed corpus
//!   (`fuzz/corpus/<target>/`) and of the crashes kept as tests
//!   (`fuzz/regressions/<target>/`), then a bounded mutation loop seeded from them
//!   (`SHOAL_FUZZ_SECS`, 1 s per target by default).

use std::str::from_utf8;

/// A fuzz target: bytes in, a panic when a promise breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name its corpus folder has.
pub const TARGETS: &[(&str, Target)] = &[
    ("soap", soap),
    ("xml", xml),
    ("zato_wire", zato_wire),
    ("basic_auth", basic_auth),
    ("wss", wss),
    ("config", config),
    ("cron", cron),
];

/// A SOAP envelope (1.1 or 1.2) with its WS-Security header, as a SOAP channel reads it.
pub fn soap(data: &[u8]) {
    if let Err(e) = crate::soap::parse(data) {
        assert!(!e.is_empty(), "an empty error");
    }
}

/// A plain XML document, as an XML channel (or an XML queue message) reads it: what is
/// accepted becomes JSON the executor can read.
pub fn xml(data: &[u8]) {
    match crate::soap::parse_plain(data) {
        Ok((_, v)) => {
            let text = serde_json::to_vec(&v).expect("the document as JSON");
            serde_json::from_slice::<serde_json::Value>(&text).expect("JSON that reads back");
        }
        Err(e) => assert!(!e.is_empty(), "an empty error"),
    }
}

/// Zato's `AnyServiceInvoker` wire (`POST /zato/json/invoke`): an accepted request names
/// a service and carries JSON or nothing.
pub fn zato_wire(data: &[u8]) {
    match crate::channels::front::zato::request(data) {
        Ok((name, payload)) => {
            assert!(!name.is_empty(), "a request without a service name");
            if !payload.is_empty() {
                serde_json::from_slice::<serde::de::IgnoredAny>(&payload)
                    .expect("an accepted payload is JSON");
            }
        }
        Err(e) => assert!(!e.is_empty(), "an empty error"),
    }
}

/// An `Authorization` header value.
pub fn basic_auth(data: &[u8]) {
    if let Ok(s) = from_utf8(data)
        && let Some((user, _)) = crate::auth::parse_basic(s)
    {
        assert!(
            !user.contains(':'),
            "a user name holding the separator: {user:?}"
        );
    }
}

/// WS-Security's `Created` timestamps and password digests.
pub fn wss(data: &[u8]) {
    if let Ok(s) = from_utf8(data) {
        let _ = crate::wss::parse_created(s);
        let mid = s
            .char_indices()
            .nth(s.chars().count() / 2)
            .map_or(s.len(), |(i, _)| i);
        let (a, b) = s.split_at(mid);
        if let Some(d) = crate::wss::digest(a, b, s) {
            assert!(!d.is_empty());
        }
    }
}

/// The config format: a `shoal apply` document, `${VAR}` substituted, parsed, validated;
/// an accepted document round-trips through the admin API's JSON.
pub fn config(data: &[u8]) {
    use shoal_common::objects::{ApplyDoc, substitute_env};
    let Ok(text) = from_utf8(data) else { return };
    let Ok(text) = substitute_env(text, |k| (k.len() < 8).then(|| "v".to_owned())) else {
        return;
    };
    let Ok(doc) = serde_yaml::from_str::<ApplyDoc>(&text) else {
        return;
    };
    if doc.validate(&[], &[]).is_ok() {
        let json = serde_json::to_vec(&doc).expect("a document as JSON");
        let back: ApplyDoc = serde_json::from_slice(&json).expect("a valid document reads back");
        back.validate(&[], &[])
            .expect("a valid document is valid after the trip");
    }
}

/// Cron expressions: Zato's `cron_definition` and Shoal's own, and the next instant.
pub fn cron(data: &[u8]) {
    let Ok(s) = from_utf8(data) else { return };
    if let Ok(c) = shoal_common::objects::zato_cron::ZatoCron::parse(s) {
        let from = chrono::DateTime::from_timestamp(1_700_000_000, 0)
            .map(|d| d.naive_utc())
            .unwrap_or_default();
        if let Some(next) = c.next_after(from) {
            assert!(next > from, "the next instant is after the start");
        }
    }
    let job = serde_json::json!({"name": "f", "service": "s", "cron": s});
    if let Ok(j) = serde_json::from_value::<shoal_common::objects::jobs::JobDef>(job) {
        let _ = j.schedule();
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::TARGETS;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    fn files(dir: &Path) -> Vec<Vec<u8>> {
        let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_file())
            .filter_map(|e| std::fs::read(e.path()).ok().map(|b| (e.path(), b)))
            .collect();
        out.sort();
        out.into_iter().map(|(_, b)| b).collect()
    }

    /// A small xorshift generator: reproducible from its seed, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % (n.max(1) as u64)) as usize
        }
    }

    /// Tokens that matter to the decoders, spliced in by the mutator.
    const TOKENS: &[&[u8]] = &[
        b"<",
        b">",
        b"</",
        b"/>",
        b"&amp;",
        b"&x;",
        b"<!DOCTYPE a [<!ENTITY x \"y\">]>",
        b"<![CDATA[",
        b"]]>",
        b"xmlns:",
        b"soap:Envelope",
        b"wsse:Security",
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"null",
        b"1e999",
        b"\\u0000",
        b"${",
        b"}",
        b"&a",
        b"*a",
        b"- ",
        b"\n",
        b"  ",
        b"!!binary",
        b"*/5",
        b"L",
        b"JAN-DEC",
        b"Basic ",
        b"=",
        b"\0",
        b"\xff\xfe",
        b"2024-02-30T25:61:61Z",
    ];

    fn mutate(rng: &mut Rng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
        let mut d = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            match rng.below(6) {
                0 if !d.is_empty() => {
                    let i = rng.below(d.len());
                    d[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(d.len() + 1);
                    d.insert(i, rng.next() as u8);
                }
                2 if !d.is_empty() => {
                    let i = rng.below(d.len());
                    let n = rng.below(d.len() - i + 1).min(16);
                    d.drain(i..i + n);
                }
                3 => {
                    let t = TOKENS[rng.below(TOKENS.len())];
                    let i = rng.below(d.len() + 1);
                    d.splice(i..i, t.iter().copied());
                }
                4 if !d.is_empty() && d.len() < 4096 => {
                    let i = rng.below(d.len());
                    let n = rng.below(d.len() - i).min(64);
                    let chunk = d[i..i + n].to_vec();
                    let at = rng.below(d.len() + 1);
                    d.splice(at..at, chunk);
                }
                _ if !others.is_empty() => {
                    let o = &others[rng.below(others.len())];
                    let cut = rng.below(d.len() + 1);
                    let from = rng.below(o.len() + 1);
                    d.truncate(cut);
                    d.extend_from_slice(&o[from..]);
                }
                _ => {}
            }
        }
        d
    }

    fn run(name: &str, target: fn(&[u8]), input: &[u8]) {
        let r = std::panic::catch_unwind(|| target(input));
        if r.is_err() {
            let dir = root().join("crashes").join(name);
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("crash-{:016x}", fxhash(input)));
            let _ = std::fs::write(&file, input);
            panic!(
                "fuzz target {name} panicked on {} bytes, kept in {} (move it to fuzz/regressions/{name}/ once fixed): {:?}",
                input.len(),
                file.display(),
                String::from_utf8_lossy(&input[..input.len().min(200)])
            );
        }
    }

    fn fxhash(b: &[u8]) -> u64 {
        b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
            (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    #[test]
    fn fuzz_targets_hold_on_the_corpus_the_regressions_and_a_bounded_mutation_run() {
        let secs: f64 = std::env::var("SHOAL_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0);
        let mut total = 0usize;
        for (name, target) in TARGETS {
            let corpus = files(&root().join("corpus").join(name));
            let regressions = files(&root().join("regressions").join(name));
            assert!(!corpus.is_empty(), "fuzz/corpus/{name}/ holds no seed");
            for input in corpus.iter().chain(&regressions) {
                run(name, *target, input);
            }
            let mut seeds = corpus;
            seeds.extend(regressions);
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ fxhash(name.as_bytes()));
            let until = Instant::now() + Duration::from_secs_f64(secs);
            let mut n = 0usize;
            while Instant::now() < until {
                let seed = &seeds[rng.below(seeds.len())];
                let input = mutate(&mut rng, seed, &seeds);
                run(name, *target, &input);
                n += 1;
            }
            eprintln!("fuzz {name}: {} seeds, {n} mutations", seeds.len());
            total += n;
        }
        assert!(total > 0);
    }
}
