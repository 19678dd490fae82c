//! The one-line human form of every feed record, for terminals.
//!
//! One formatter, over the JSON form: the agent's stdout (when a terminal)
//! and `guard events` both use it, so the two never disagree, and `guard
//! events` can show records from an agent of another version. It is
//! tolerant: a field that is missing or of another type prints as `?`.
//!
//! ```text
//! <time> DENIED[ xN since <first_time>] read /run/credentials/demo.service/api-token by pid 412 (cat) uid 0 (root) cgroup /system.slice/cron.service [policy demo / file_open]
//! <time> TAMPER DENIED bpf(2): BPF_PROG_LOAD of an LSM, ... by pid 77 (bpftool) uid 0 (root) cgroup /user.slice [bpf]
//! <time> ADMIN reloaded /sys/fs/bpf/guard/i-... by pid 300: 2 policies
//! <time> GAP 1200 records missed (subscriber lagged)
//! ```

use serde_json::Value;

/// The human line for a record's JSON form; `None` when it is not a record
/// of a kind guard knows (the caller shows the JSON as it came).
pub fn line(v: &Value) -> Option<String> {
    let time = text(v, &["time"]);
    match v.get("kind")?.as_str()? {
        "access" => Some(format!(
            "{time} {}{} {} {} {} [policy {} / {}]",
            text(v, &["decision"]).to_uppercase(),
            burst(v),
            list(v, "access"),
            text(v, &["file", "path"]),
            opener(v),
            text(v, &["policy"]),
            text(v, &["hook"]),
        )),
        "tamper" => Some(format!(
            "{time} TAMPER {}{} {} {} [{}]",
            text(v, &["decision"]).to_uppercase(),
            burst(v),
            text(v, &["detail"]),
            opener(v),
            text(v, &["hook"]),
        )),
        "admin" => {
            let detail = text(v, &["detail"]);
            Some(format!(
                "{time} ADMIN {} {} by pid {}{}",
                text(v, &["action"]),
                text(v, &["instance"]),
                text(v, &["pid"]),
                if detail.is_empty() { String::new() } else { format!(": {detail}") },
            ))
        }
        "gap" => Some(format!("{time} GAP {} records missed ({})", text(v, &["missed"]), text(v, &["reason"]))),
        _ => None,
    }
}

/// Who opened: `by pid P (comm) uid U[ (user)] cgroup C`.
fn opener(v: &Value) -> String {
    let user = match field(v, &["process", "user"]).and_then(Value::as_str) {
        Some(u) => format!(" ({u})"),
        None => String::new(),
    };
    format!(
        "by pid {} ({}) uid {}{user} cgroup {}",
        text(v, &["process", "pid"]),
        text(v, &["process", "comm"]),
        text(v, &["process", "uid"]),
        text(v, &["process", "cgroup"]),
    )
}

/// ` xN since <first_time>` when the record stands for several decisions.
fn burst(v: &Value) -> String {
    match v.get("count").and_then(Value::as_u64) {
        Some(n) if n > 1 => format!(" x{n} since {}", text(v, &["first_time"])),
        _ => String::new(),
    }
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

/// A string or number field as text; `?` when missing or null.
fn text(v: &Value, path: &[&str]) -> String {
    match field(v, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "?".to_string(),
    }
}

/// An array of strings joined with `+` (`read+write`).
fn list(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_array) {
        Some(items) if !items.is_empty() => items.iter().map(|i| i.as_str().unwrap_or("?")).collect::<Vec<_>>().join("+"),
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tolerates_missing_and_unknown_fields() {
        let v = json!({"kind": "gap", "missed": 3, "future_field": {"x": 1}});
        assert_eq!(line(&v).unwrap(), "? GAP 3 records missed (?)");
        let v = json!({"kind": "access", "decision": "denied", "process": {"pid": 1}});
        assert_eq!(line(&v).unwrap(), "? DENIED ? ? by pid 1 (?) uid ? cgroup ? [policy ? / ?]");
    }

    #[test]
    fn unknown_kinds_and_non_records_have_no_human_form() {
        assert_eq!(line(&json!({"kind": "telemetry", "time": "t"})), None);
        assert_eq!(line(&json!({"time": "t"})), None);
        assert_eq!(line(&json!([1, 2])), None);
    }
}
