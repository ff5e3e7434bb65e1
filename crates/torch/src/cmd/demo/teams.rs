//! Scenario 3, team collaboration: not built yet. Teams (formation on the
//! hub, subtasks on members, the team channel, shared locks, the merge
//! queue) are issue 15's items 1–5; until they land this scenario says so
//! and fails, rather than stage something the product cannot do.

use anyhow::Result;

use super::Verdict;
use super::stage::Narrator;

pub(super) async fn run(say: &Narrator, _keep: bool) -> Result<Verdict> {
    say.line(
        "  teams do not run on the hub yet: team specs and formation exist in torch-core only",
    )?;
    Ok(Verdict::new(
        false,
        "not available yet: the hub does not form or run teams (team specs and exact formation exist in torch-core; messaging, locks and the merge queue are not merged)",
    ))
}
