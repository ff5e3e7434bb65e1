//! `torch bench routing`: the real scoring code against baseline policies on
//! the shipped synthetic workload, on a virtual clock.

use anyhow::Result;
use torch_core::routing::sim;

use crate::output;

pub(crate) fn run(seed: u64, json: bool) -> Result<()> {
    let report = sim::run(seed);
    if json {
        return output::json(&report);
    }
    let mut t = output::table(&["POLICY", "MEAN (s)", "P95 (s)", "SUCCESS", "MAKESPAN (s)"]);
    for (name, p) in &report.policies {
        t.add_row(vec![
            name.clone(),
            format!("{:.1}", p.mean_completion_s),
            format!("{:.1}", p.p95_completion_s),
            format!("{:.3}", p.success_rate),
            format!("{:.0}", p.makespan_s),
        ]);
    }
    output::line(t.to_string())?;
    output::line(format!(
        "torch / least_loaded mean completion: {:.3}   torch / lower_bound: {:.2}   (seed {seed})",
        report.torch_vs_least_loaded, report.torch_vs_lower_bound
    ))
}
