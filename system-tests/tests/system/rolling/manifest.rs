//! What `deploy/kubernetes/` configures, read from the manifests themselves so that the rolling
//! test starts replicas exactly as they do: the ConfigMaps' variables, the Secret's keys, the
//! StatefulSet's literal `env` values (`$(VAR)` expanded as Kubernetes does), its probes, its
//! preStop pause and its grace period. A small reader for the layout of those files (block
//! YAML, one setting per line), not a YAML parser.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The directory of the manifests.
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes"))
}

fn read(name: &str) -> String {
    let path = dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(value: &str) -> String {
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    value.to_owned()
}

/// The `key: value` entries of the top-level block `block` (`data:`, `stringData:`).
pub fn map_block(file: &str, block: &str) -> BTreeMap<String, String> {
    let text = read(file);
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim_end() != format!("{block}:"));
    lines.next();
    lines
        .take_while(|l| l.trim().is_empty() || l.starts_with(' '))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let (key, value) = l.trim().split_once(':').unwrap();
            (key.trim().to_owned(), unquote(value))
        })
        .collect()
}

/// A probe of the StatefulSet's container.
#[derive(Debug, Clone)]
pub struct Probe {
    pub path: String,
    pub scheme: String,
    pub initial_delay_seconds: u64,
    pub period_seconds: u64,
    pub timeout_seconds: u64,
    pub failure_threshold: u32,
}

/// What the data-plane StatefulSet says.
#[derive(Debug, Clone)]
pub struct StatefulSet {
    pub name: String,
    pub service_name: String,
    pub replicas: usize,
    pub config_map: String,
    pub secret: String,
    /// `env` entries with a literal `value`, in order (unexpanded).
    pub env: Vec<(String, String)>,
    /// `env` entries taken from the pod (`fieldRef`): name → field path.
    pub field_env: BTreeMap<String, String>,
    pub readiness: Probe,
    pub liveness: Probe,
    pub termination_grace_seconds: u64,
    pub pre_stop_sleep_seconds: u64,
}

/// The lines of the block that starts with `header` (e.g. `readinessProbe:`).
fn block<'a>(lines: &[&'a str], header: &str) -> Vec<&'a str> {
    let start = lines
        .iter()
        .position(|l| l.trim() == header)
        .unwrap_or_else(|| panic!("no {header}"));
    let depth = indent(lines[start]);
    lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > depth)
        .copied()
        .collect()
}

fn field(lines: &[&str], name: &str) -> Option<String> {
    let prefix = format!("{name}:");
    lines
        .iter()
        .map(|l| l.trim().trim_start_matches("- "))
        .find_map(|l| l.strip_prefix(&prefix).map(unquote))
}

fn number(lines: &[&str], name: &str, default: u64) -> u64 {
    field(lines, name).map_or(default, |v| v.parse().unwrap())
}

fn probe(lines: &[&str], header: &str) -> Probe {
    let lines = block(lines, header);
    Probe {
        path: field(&lines, "path").unwrap(),
        scheme: field(&lines, "scheme").unwrap_or_else(|| "HTTP".into()),
        // Kubernetes' defaults.
        initial_delay_seconds: number(&lines, "initialDelaySeconds", 0),
        period_seconds: number(&lines, "periodSeconds", 10),
        timeout_seconds: number(&lines, "timeoutSeconds", 1),
        failure_threshold: u32::try_from(number(&lines, "failureThreshold", 3)).unwrap(),
    }
}

/// Reads `dataplane-statefulset.yaml`.
pub fn statefulset() -> StatefulSet {
    let text = read("dataplane-statefulset.yaml");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let metadata = block(&lines, "metadata:");
    let env_lines = block(&lines, "env:");
    let mut env = Vec::new();
    let mut field_env = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in &env_lines {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("- name:") {
            current = Some(unquote(name));
        } else if let (Some(value), Some(name)) = (trimmed.strip_prefix("value:"), &current) {
            env.push((name.clone(), unquote(value)));
        } else if let (Some(path), Some(name)) = (trimmed.strip_prefix("fieldPath:"), &current) {
            field_env.insert(name.clone(), unquote(path));
        }
    }
    let env_from = block(&lines, "envFrom:");
    let reference = |kind: &str| {
        let at = env_from
            .iter()
            .position(|l| l.trim().trim_start_matches("- ") == format!("{kind}:"))
            .unwrap_or_else(|| panic!("no envFrom {kind}"));
        field(&env_from[at + 1..at + 2], "name").unwrap()
    };
    let pre_stop = block(&lines, "preStop:");
    let command = field(&pre_stop, "command").unwrap();
    let pre_stop_sleep_seconds = command
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(unquote)
        .collect::<Vec<_>>()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    StatefulSet {
        name: field(&metadata, "name").unwrap(),
        service_name: field(&lines, "serviceName").unwrap(),
        replicas: usize::try_from(number(&lines, "replicas", 1)).unwrap(),
        config_map: reference("configMapRef"),
        secret: reference("secretRef"),
        env,
        field_env,
        readiness: probe(&lines, "readinessProbe:"),
        liveness: probe(&lines, "livenessProbe:"),
        termination_grace_seconds: number(&lines, "terminationGracePeriodSeconds", 30),
        pre_stop_sleep_seconds,
    }
}

/// Expands `$(NAME)` from `vars`, as Kubernetes does in `env` values (unknown names stay).
pub fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) if vars.contains_key(&after[..end]) => {
                out.push_str(&vars[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn the_manifests_are_read() {
    let set = statefulset();
    assert_eq!(set.name, "dpf-dataplane");
    assert_eq!(set.replicas, 3);
    assert_eq!(set.readiness.path, "/api/v1/ready");
    assert_eq!(set.liveness.path, "/api/v1/health");
    assert_eq!(set.readiness.scheme, "HTTPS");
    assert_eq!(set.field_env.get("POD_NAME").unwrap(), "metadata.name");
    assert!(set
        .env
        .iter()
        .any(|(k, v)| k == "EDC_RUNTIME_ID" && v == "$(POD_NAME)"));
    assert!(set.termination_grace_seconds > set.pre_stop_sleep_seconds + 10);
    assert_eq!(set.secret, "dpf-secrets");
    assert!(set
        .env
        .iter()
        .any(|(k, v)| k == "DPF_PUBLIC_URL" && v.contains(&set.service_name)));
    let config = map_block("dataplane-configmap.yaml", "data");
    assert_eq!(config.get("WEB_HTTP_PORT").unwrap(), "8282");
    let secret = map_block("dataplane-secret.yaml", "stringData");
    assert!(secret.contains_key("DPF_STORE_URL"));
    let vars = BTreeMap::from([("A".to_owned(), "x".to_owned())]);
    assert_eq!(expand("$(A).$(B)/$(A)", &vars), "x.$(B)/x");
}
