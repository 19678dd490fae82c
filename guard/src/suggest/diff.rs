//! A unified diff of two small texts (policy files), line by line: the
//! longest common subsequence, hunks with three lines of context.

use std::fmt::Write as _;

enum Op<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

fn ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(Op::Same(a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(Op::Del(a[i]));
            i += 1;
        } else {
            out.push(Op::Add(b[j]));
            j += 1;
        }
    }
    out
}

/// `diff -u old new`; empty when the texts are equal.
pub fn unified(old_name: &str, old: &str, new_name: &str, new: &str) -> String {
    const CONTEXT: usize = 3;
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = ops(&a, &b);
    if ops.iter().all(|o| matches!(o, Op::Same(_))) {
        return String::new();
    }
    let mut s = format!("--- {old_name}\n+++ {new_name}\n");
    // Positions (in ops) of changes, grouped into hunks.
    let changed: Vec<usize> = ops.iter().enumerate().filter(|(_, o)| !matches!(o, Op::Same(_))).map(|(i, _)| i).collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        // Line numbers at `start`.
        let (mut la, mut lb) = (1, 1);
        for o in &ops[..start] {
            match o {
                Op::Same(_) => {
                    la += 1;
                    lb += 1;
                }
                Op::Del(_) => la += 1,
                Op::Add(_) => lb += 1,
            }
        }
        let na = ops[start..end].iter().filter(|o| !matches!(o, Op::Add(_))).count();
        let nb = ops[start..end].iter().filter(|o| !matches!(o, Op::Del(_))).count();
        let _ = writeln!(s, "@@ -{la},{na} +{lb},{nb} @@");
        for o in &ops[start..end] {
            let _ = match o {
                Op::Same(l) => writeln!(s, " {l}"),
                Op::Del(l) => writeln!(s, "-{l}"),
                Op::Add(l) => writeln!(s, "+{l}"),
            };
        }
    }
    s
}
