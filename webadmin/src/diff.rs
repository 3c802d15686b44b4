//! A line diff for the web admin (a module's kept version against the current one): the
//! longest common subsequence of lines, shown as hunks with context.

/// One line of a diff: `' '` kept, `'-'` only in the old text, `'+'` only in the new.
pub type Line = (char, String);

/// Lines compared at most per side (a longer text is not diffed: O(n·m) table).
pub const MAX_LINES: usize = 4000;

/// The changed lines of `old` → `new` with `context` kept lines around each change (`'…'`
/// marks a gap); None when a side is longer than [`MAX_LINES`].
pub fn diff(old: &str, new: &str, context: usize) -> Option<Vec<Line>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return None;
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let w = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let mut all: Vec<Line> = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            all.push((' ', a[i].to_owned()));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
            // What goes before what comes, as `diff -u` shows it.
            all.push(('-', a[i].to_owned()));
            i += 1;
        } else {
            all.push(('+', b[j].to_owned()));
            j += 1;
        }
    }
    // Keep the changes and `context` lines around each.
    let near: Vec<bool> = (0..all.len())
        .map(|k| {
            let lo = k.saturating_sub(context);
            let hi = (k + context + 1).min(all.len());
            all[lo..hi].iter().any(|(c, _)| *c != ' ')
        })
        .collect();
    let mut out = Vec::new();
    let mut skipped = false;
    for (k, line) in all.into_iter().enumerate() {
        if near[k] {
            if skipped && !out.is_empty() {
                out.push(('…', String::new()));
            }
            skipped = false;
            out.push(line);
        } else {
            skipped = true;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_come_with_their_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "a\nb\nC\nd\ne\nf\ng\nh\n";
        let d = diff(old, new, 1).expect("small");
        let shown: Vec<String> = d.iter().map(|(c, l)| format!("{c}{l}")).collect();
        assert_eq!(
            shown,
            ["b", "-c", "+C", "d", "…", "g", "+h"].map(|s| {
                if s.starts_with(['-', '+', '…']) {
                    s.to_owned()
                } else {
                    format!(" {s}")
                }
            })
        );
        assert!(diff("x\n", "x\n", 2).expect("small").is_empty());
        assert!(diff(&"l\n".repeat(MAX_LINES + 1), "", 2).is_none());
    }
}
