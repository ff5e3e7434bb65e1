//! The OpenMetrics text form of the Prometheus exposition, for scrapers that
//! ask for it (`Accept: application/openmetrics-text`).
//!
//! The exporter writes the Prometheus text format; OpenMetrics differs in
//! what we emit only in three ways: a counter's family name (in `# TYPE` and
//! `# HELP`) has no `_total` suffix while its samples keep it, there are no
//! blank lines, and the exposition ends with `# EOF`.

/// Content type of the Prometheus text format.
pub(crate) const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics.
pub(crate) const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `text` (Prometheus text format) as OpenMetrics.
pub(crate) fn to_openmetrics(text: &str) -> String {
    // Families declared as counters, by their Prometheus name.
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let meta = line
            .strip_prefix("# TYPE ")
            .map(|r| ("# TYPE ", r))
            .or_else(|| line.strip_prefix("# HELP ").map(|r| ("# HELP ", r)))
            .or_else(|| line.strip_prefix("# UNIT ").map(|r| ("# UNIT ", r)));
        match meta {
            Some((tag, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let family = match name.strip_suffix("_total") {
                    Some(base) if counters.contains(name) => base,
                    _ => name,
                };
                out.push_str(tag);
                out.push_str(family);
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_lose_total_in_their_family_name_only() {
        let text = "# HELP torch_tasks_completed_total Tasks that succeeded.\n\
                    # TYPE torch_tasks_completed_total counter\n\
                    torch_tasks_completed_total 3\n\
                    \n\
                    # TYPE torch_queue_depth gauge\n\
                    torch_queue_depth{state=\"queued\",priority=\"high\"} 1\n";
        let om = to_openmetrics(text);
        assert_eq!(
            om,
            "# HELP torch_tasks_completed Tasks that succeeded.\n\
             # TYPE torch_tasks_completed counter\n\
             torch_tasks_completed_total 3\n\
             # TYPE torch_queue_depth gauge\n\
             torch_queue_depth{state=\"queued\",priority=\"high\"} 1\n\
             # EOF\n"
        );
    }
}
