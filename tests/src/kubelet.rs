//! A ConfigMap volume written exactly as the kubelet writes it (its `AtomicWriter`), so
//! tests can mount "ConfigMaps" on local folders: each key is a visible symlink
//! `KEY → ..data/KEY`; `..data` is a symlink to a timestamped folder holding the files;
//! an update writes a new timestamped folder, points a `..data_tmp` link at it, renames
//! that over `..data` (the one atomic step), adds links for new keys, removes the links of
//! removed keys and deletes the old folder.

use std::path::Path;

/// Writes (or updates) the ConfigMap volume at `dir` to hold exactly `files`.
pub fn write(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("volume dir");
    let old = std::fs::read_link(dir.join("..data")).ok();
    let now = chrono_like_stamp();
    let ts_name = format!("..{now}");
    let ts = dir.join(&ts_name);
    std::fs::create_dir(&ts).expect("timestamped dir");
    for (name, content) in files {
        std::fs::write(ts.join(name), content).expect("write key");
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts_name, &tmp).expect("..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("key link");
        }
    }
    // Links of keys no longer in the ConfigMap go.
    for entry in std::fs::read_dir(dir).expect("read volume").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        if !files.iter().any(|(n, _)| *n == name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
}

/// A unique folder stamp (seconds, nanoseconds, a counter; the kubelet writes the date and
/// time, `2026_12_01_10_00_00.123456789`: only the `..` prefix matters to readers).
fn chrono_like_stamp() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{}_{:09}_{n}", d.as_secs(), d.subsec_nanos())
}
