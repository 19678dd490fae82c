//! User names from a passwd(5) file, read directly (no NSS): policies name
//! users, events name them back.

use std::collections::HashMap;
use std::path::Path;

/// Name -> UID and UID -> name, from `name:password:uid:gid:...` lines.
/// The first line for a name (or a UID) wins, as with getpwnam(3).
#[derive(Debug, Clone, Default)]
pub struct Passwd {
    by_name: HashMap<String, u32>,
    by_uid: HashMap<u32, String>,
    /// Names in file order, for "did you mean" suggestions.
    names: Vec<String>,
}

impl Passwd {
    /// Reads a passwd file. Bytes that are not UTF-8 (say, in a comment
    /// field) are tolerated; lines that do not parse are skipped.
    pub fn read(path: &Path) -> std::io::Result<Passwd> {
        let bytes = std::fs::read(path)?;
        Ok(Passwd::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// Parses passwd text. Blank lines, `#` comments, NIS `+`/`-` entries and
    /// lines without a numeric UID are skipped.
    pub fn parse(text: &str) -> Passwd {
        let mut passwd = Passwd::default();
        for line in text.lines() {
            if line.is_empty() || line.starts_with(['#', '+', '-']) {
                continue;
            }
            let mut fields = line.split(':');
            let (Some(name), Some(_password), Some(uid)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(uid) = uid.parse::<u32>() else {
                continue;
            };
            if name.is_empty() || uid == u32::MAX {
                continue;
            }
            if !passwd.by_name.contains_key(name) {
                passwd.by_name.insert(name.to_owned(), uid);
                passwd.names.push(name.to_owned());
            }
            passwd.by_uid.entry(uid).or_insert_with(|| name.to_owned());
        }
        passwd
    }

    pub fn uid(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, uid: u32) -> Option<&str> {
        self.by_uid.get(&uid).map(String::as_str)
    }

    /// All user names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}
