//! Grouping records into openers, flagging what looks like an attack, and
//! the change to a unit's policy that would allow the rest.
//!
//! An opener is (executable, opener unit, UID): the same program of the
//! same unit as the same user is one line however many processes it ran as.
//! A policy can only ever allow processes of its own unit, so openers of
//! other units are reported, never proposed.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use super::read::Seen;
use crate::policy::{Passwd, Policy, UNIT_USER};

/// The UIDs systemd gives `DynamicUser=` units (systemd's fixed range).
pub const DYNAMIC_UIDS: RangeInclusive<u32> = 61184..=65519;
/// Executables whose opens as root look like someone at a shell.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "tcsh", "csh", "busybox"];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenerKey {
    pub exe: String,
    pub opener_unit: String,
    pub uid: u32,
}

/// Why an opener is left out of a suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    /// Looks like an attack: only included if the admin names it (`--include`).
    RootShell,
    /// Looks like an attack, and no policy can allow it.
    OutsideAnyUnit,
    /// A process of another unit: this unit's policy cannot allow it.
    OtherUnit,
    /// An attempt on guard itself.
    Tamper,
    /// A `setup_only` file: only systemd's credential setup may open it.
    SetupOnly,
}

impl Flag {
    pub fn says(&self) -> &'static str {
        match self {
            Flag::RootShell => "ATTACK? a root shell (name it with --include to allow it anyway)",
            Flag::OutsideAnyUnit => "ATTACK? a process outside any unit (no policy can allow it)",
            Flag::OtherUnit => "another unit's process (a policy allows only its own unit; give that unit its own copy of the secret)",
            Flag::Tamper => "ATTACK? an attempt on guard itself",
            Flag::SetupOnly => "a setup_only file (only systemd's credential setup may open it; move it to protect if the service reads it)",
        }
    }

    pub fn attack(&self) -> bool {
        matches!(self, Flag::RootShell | Flag::OutsideAnyUnit | Flag::Tamper)
    }
}

/// Everything seen of one opener.
#[derive(Debug, Clone)]
pub struct Opener {
    pub key: OpenerKey,
    pub user: String,
    pub comms: BTreeSet<String>,
    pub decisions: BTreeSet<String>,
    pub paths: BTreeSet<String>,
    pub count: u64,
    pub first: String,
    pub last: String,
    pub flag: Option<Flag>,
}

impl Opener {
    /// The executable, or what is known of it.
    pub fn exe_label(&self) -> String {
        if self.key.exe.is_empty() {
            format!("(executable unknown; comm {})", self.comms.iter().cloned().collect::<Vec<_>>().join(","))
        } else {
            self.key.exe.clone()
        }
    }
}

/// The openers of one protected unit (or of tamper records, unit "").
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub unit: String,
    pub modes: BTreeSet<String>,
    pub openers: Vec<Opener>,
    pub records: usize,
}

fn is_root_shell(s: &Seen) -> bool {
    let base = s.exe.rsplit('/').next().unwrap_or("");
    let name = if base.is_empty() { s.comm.as_str() } else { base };
    s.uid == 0 && SHELLS.contains(&name)
}

fn flag_of(s: &Seen) -> Option<Flag> {
    if s.kind == "tamper" {
        Some(Flag::Tamper)
    } else if s.opener_unit.is_empty() {
        Some(Flag::OutsideAnyUnit)
    } else if is_root_shell(s) {
        Some(Flag::RootShell)
    } else if s.opener_unit != s.unit {
        Some(Flag::OtherUnit)
    } else {
        None
    }
}

/// Groups records by protected unit, then opener. Tamper records are the
/// group with unit "".
pub fn group(seen: &[Seen]) -> BTreeMap<String, Group> {
    let mut units: BTreeMap<String, (Group, BTreeMap<OpenerKey, Opener>)> = BTreeMap::new();
    for s in seen {
        let unit = if s.kind == "tamper" { String::new() } else { s.unit.clone() };
        let (g, openers) = units.entry(unit.clone()).or_insert_with(|| (Group { unit, ..Group::default() }, BTreeMap::new()));
        g.records += 1;
        if !s.mode.is_empty() {
            g.modes.insert(s.mode.clone());
        }
        let key = OpenerKey { exe: s.exe.clone(), opener_unit: s.opener_unit.clone(), uid: s.uid };
        let o = openers.entry(key.clone()).or_insert_with(|| Opener {
            key,
            user: s.user.clone(),
            comms: BTreeSet::new(),
            decisions: BTreeSet::new(),
            paths: BTreeSet::new(),
            count: 0,
            first: s.first_time.clone(),
            last: s.time.clone(),
            flag: flag_of(s),
        });
        o.comms.insert(s.comm.clone());
        o.decisions.insert(s.decision.clone());
        o.paths.insert(s.path.clone());
        o.count += s.count;
        // RFC 3339 in UTC with a fixed number of digits: compares as text.
        if s.first_time < o.first {
            o.first = s.first_time.clone();
        }
        if s.time > o.last {
            o.last = s.time.clone();
        }
    }
    units
        .into_iter()
        .map(|(unit, (mut g, openers))| {
            g.openers = openers.into_values().collect();
            g.openers.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
            (unit, g)
        })
        .collect()
}

/// An `allow_users` entry to add.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum UserEntry {
    /// `"@unit"`: the UID systemd picked for this start (`DynamicUser=`).
    Unit,
    Name(String),
    Uid(u32),
}

impl UserEntry {
    pub fn toml(&self) -> String {
        match self {
            UserEntry::Unit => format!("\"{UNIT_USER}\""),
            UserEntry::Name(n) => format!("\"{n}\""),
            UserEntry::Uid(u) => u.to_string(),
        }
    }
}

/// The change that would allow what was seen of a unit.
#[derive(Debug, Clone, Default)]
pub struct Proposal {
    /// Entries to add, each with the openers that need it.
    pub users: BTreeMap<UserEntry, Vec<String>>,
    /// Executables to add (only when the policy already lists executables).
    pub executables: BTreeSet<String>,
    /// Executables seen inside the unit (for a comment when the policy has none).
    pub seen_executables: BTreeSet<String>,
    /// Paths to protect (only for a unit with no policy yet).
    pub protect: BTreeSet<String>,
    /// Openers left out, each with why.
    pub left_out: Vec<(Opener, Flag)>,
    /// Openers the proposal allows.
    pub allowed: Vec<Opener>,
}

impl Proposal {
    pub fn changes(&self) -> bool {
        !self.users.is_empty() || !self.executables.is_empty()
    }
}

/// Whether `name` is one of the `--include` names of an opener: its
/// executable path, its executable's file name, or `uid:N`.
fn named(o: &Opener, include: &[String]) -> bool {
    let base = o.key.exe.rsplit('/').next().unwrap_or("");
    include.iter().any(|n| *n == o.key.exe || (!base.is_empty() && n == base) || *n == format!("uid:{}", o.key.uid))
}

/// What to add to `policy` (None: the unit has no policy yet) so that the
/// group's openers are allowed, except those flagged and not `include`d.
pub fn propose(g: &Group, policy: Option<&Policy>, include: &[String], passwd: Option<&Passwd>) -> Proposal {
    let mut p = Proposal::default();
    let credentials = format!("/run/credentials/{}/", g.unit);
    for o in &g.openers {
        if policy.is_none() {
            // Every record names a protected file, whoever opened it.
            for path in &o.paths {
                if !path.is_empty() && !path.starts_with(&credentials) {
                    p.protect.insert(path.clone());
                }
            }
        }
        let setup_only = policy.is_some_and(|pol| {
            o.paths.iter().all(|path| pol.setup_only.iter().any(|s| std::path::Path::new(path).starts_with(s)))
        });
        let flag = match &o.flag {
            Some(Flag::RootShell) if named(o, include) => None,
            Some(f) => Some(f.clone()),
            None if setup_only => Some(Flag::SetupOnly),
            None => None,
        };
        if let Some(f) = flag {
            p.left_out.push((o.clone(), f));
            continue;
        }
        p.allowed.push(o.clone());
        let who = format!("{} ({} open{})", o.exe_label(), o.count, if o.count == 1 { "" } else { "s" });
        if !o.key.exe.is_empty() {
            p.seen_executables.insert(o.key.exe.clone());
        }
        let uid = o.key.uid;
        let dynamic = DYNAMIC_UIDS.contains(&uid);
        let allowed_uid = policy.is_some_and(|pol| pol.allow_uids.contains(&uid) || (dynamic && pol.unit_user));
        if !allowed_uid {
            let entry = if dynamic {
                UserEntry::Unit
            } else {
                match passwd.and_then(|pw| pw.name(uid)) {
                    Some(name) => UserEntry::Name(name.to_string()),
                    None => UserEntry::Uid(uid),
                }
            };
            p.users.entry(entry).or_default().push(who);
        }
        if let Some(pol) = policy {
            let listed = pol.executables.iter().any(|e| e.as_os_str() == o.key.exe.as_str());
            if !pol.executables.is_empty() && !listed && !o.key.exe.is_empty() {
                p.executables.insert(o.key.exe.clone());
            }
        }
    }
    p
}
