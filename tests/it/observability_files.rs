//! Offline checks of the operator artifacts: the Grafana dashboard
//! (`dashboards/herald.json`) and the Prometheus alert rules and runbook
//! (`deploy/prometheus/`). They parse, every panel has a query, and they use
//! only the `herald_*` metrics that DESIGN.md names. promtool checks the rules'
//! semantics (`scripts/check-observability.sh`).

use std::{collections::HashSet, sync::LazyLock};

use herald::metrics::{Kind, Metrics};
use serde_json::Value;

const DASHBOARD: &str = include_str!("../../dashboards/herald.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yml");
const README: &str = include_str!("../../README.md");

const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("dashboards/herald.json is valid JSON")
}

/// Every panel, rows and the panels nested in (collapsed) rows included.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

fn title(panel: &Value) -> &str {
    panel["title"].as_str().unwrap_or("<untitled>")
}

fn exprs(panel: &Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["expr"].as_str())
        .filter(|e| !e.trim().is_empty())
        .collect()
}

/// `(position, name)` of every `herald_[a-z_]+` in `text` that starts a word.
fn metric_names(text: &str) -> Vec<(usize, &str)> {
    let bytes = text.as_bytes();
    text.match_indices("herald_")
        .filter(|(at, _)| {
            *at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_')
        })
        .map(|(at, _)| {
            let len = text[at..]
                .bytes()
                .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
                .count();
            (at, &text[at..at + len])
        })
        .collect()
}

/// Every metric family herald registers, the per-subscription label included.
static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics::new(true));

/// A name herald's registry exports: a family, or a histogram's series.
fn is_known_metric(name: &str) -> bool {
    METRICS.families().iter().any(|(family, kind)| {
        name == family
            || (*kind == Kind::Histogram
                && HISTOGRAM_SUFFIXES
                    .iter()
                    .any(|suffix| name.strip_prefix(family.as_str()) == Some(suffix)))
    })
}

fn unknown_metrics(text: &str) -> Vec<&str> {
    metric_names(text)
        .into_iter()
        .map(|(_, name)| name)
        .filter(|name| !is_known_metric(name))
        .collect()
}

/// The alert names in alerts.yml, in order.
fn alert_names() -> Vec<&'static str> {
    ALERTS
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect()
}

#[test]
fn the_dashboard_is_json_on_a_current_grafana_schema() {
    let dashboard = dashboard();
    let version = dashboard["schemaVersion"]
        .as_u64()
        .expect("schemaVersion is a number");
    assert!(version >= 39, "schemaVersion {version} is older than 39");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(
        all_panels(&dashboard).iter().any(|p| !is_row(p)),
        "the dashboard has panels"
    );
}

#[test]
fn every_dashboard_panel_has_a_query() {
    let dashboard = dashboard();
    for panel in all_panels(&dashboard).into_iter().filter(|p| !is_row(p)) {
        assert!(
            !exprs(panel).is_empty(),
            "panel {:?} has no target with a non-empty expr",
            title(panel)
        );
    }
}

#[test]
fn dashboard_panel_ids_are_unique() {
    let dashboard = dashboard();
    let mut seen = HashSet::new();
    for panel in all_panels(&dashboard) {
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {:?} has no numeric id", title(panel)));
        assert!(seen.insert(id), "panel id {id} is used twice");
    }
}

#[test]
fn every_dashboard_panel_says_what_it_means_and_its_unit() {
    let dashboard = dashboard();
    for panel in all_panels(&dashboard).into_iter().filter(|p| !is_row(p)) {
        let description = panel["description"].as_str().unwrap_or_default();
        assert!(
            description.len() >= 40,
            "panel {:?} lacks a description of what it means and what to do",
            title(panel)
        );
        let unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or_default();
        assert!(!unit.is_empty(), "panel {:?} has no unit", title(panel));
    }
}

#[test]
fn every_dashboard_query_is_filtered_by_job_and_instance() {
    let dashboard = dashboard();
    for panel in all_panels(&dashboard) {
        for expr in exprs(panel) {
            for (at, name) in metric_names(expr) {
                let rest = &expr[at + name.len()..];
                let selector = rest
                    .strip_prefix('{')
                    .and_then(|s| s.split_once('}'))
                    .map(|(inside, _)| inside)
                    .unwrap_or_else(|| {
                        panic!("{name} in panel {:?} has no label selector", title(panel))
                    });
                for filter in [r#"job=~"$job""#, r#"instance=~"$instance""#] {
                    assert!(
                        selector.contains(filter),
                        "{name} in panel {:?} is not filtered by {filter}",
                        title(panel)
                    );
                }
            }
        }
    }
}

#[test]
fn the_dashboard_uses_only_metrics_herald_exports() {
    let dashboard = dashboard();
    let mut used = 0;
    for panel in all_panels(&dashboard) {
        for expr in exprs(panel) {
            used += metric_names(expr).len();
        }
    }
    assert!(used > 0, "the dashboard queries no herald metric");
    let unknown = unknown_metrics(DASHBOARD);
    assert!(
        unknown.is_empty(),
        "unknown metrics in the dashboard: {unknown:?}"
    );
}

#[test]
fn the_alert_rules_use_only_metrics_herald_exports() {
    assert!(
        !metric_names(ALERTS).is_empty(),
        "alerts.yml uses no herald metric"
    );
    let unknown = unknown_metrics(ALERTS);
    assert!(
        unknown.is_empty(),
        "unknown metrics in alerts.yml: {unknown:?}"
    );
}

#[test]
fn the_datasource_is_a_variable_and_no_panel_hard_codes_one() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list is an array");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` template variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for name in ["job", "instance"] {
        let v = variable(name);
        assert_eq!(v["type"], "query", "`{name}` is a query variable");
        assert_eq!(v["datasource"]["uid"], "${datasource}");
    }

    fn check(value: &Value, title: &str) {
        let Some(ds) = value.get("datasource") else {
            return;
        };
        let uid = match ds {
            Value::Object(o) => o.get("uid").and_then(Value::as_str),
            Value::String(s) => Some(s.as_str()),
            _ => None,
        };
        assert_eq!(
            uid,
            Some("${datasource}"),
            "panel {title:?} names a datasource other than ${{datasource}}: {ds}"
        );
    }
    for panel in all_panels(&dashboard).into_iter().filter(|p| !is_row(p)) {
        check(panel, title(panel));
        for target in panel["targets"].as_array().into_iter().flatten() {
            check(target, title(panel));
        }
    }
}

#[test]
fn every_alert_links_its_runbook_section() {
    let names = alert_names();
    assert!(names.len() >= 8, "alerts.yml has only {names:?}");
    let links: Vec<&str> = ALERTS
        .lines()
        .filter_map(|line| line.trim().strip_prefix("runbook_url:"))
        .map(str::trim)
        .collect();
    assert_eq!(links.len(), names.len(), "one runbook_url per alert");
    for (name, link) in names.iter().zip(&links) {
        let anchor = format!("#runbook-{}", name.to_lowercase());
        assert!(link.ends_with(&anchor), "{name} links {link}, not {anchor}");
        assert!(
            README.contains(&format!("### Runbook: {name}\n")),
            "README.md has no section `### Runbook: {name}`"
        );
    }
}
