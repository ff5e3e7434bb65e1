//! `torch watch [STREAM…]`: tail the event streams.

use anyhow::Result;
use torch_api::rest::EventPage;

use crate::cli::WatchArgs;
use crate::client::{Client, EventFollower};
use crate::output;

pub(crate) async fn run(args: WatchArgs) -> Result<()> {
    let client = Client::new(&args.hub.hub, args.hub.token.clone())?;
    let after = match (args.after, args.from_start) {
        (Some(a), _) => a,
        (None, true) => 0,
        (None, false) => {
            client
                .get::<EventPage>("/api/v1/events?tail=true")
                .await?
                .last_id
        }
    };
    let streams = args.streams.join(",");
    let mut seen = 0u64;
    let mut follower = EventFollower::new(after, &streams, 10_000, 30);
    loop {
        let page = follower.next(&client).await?;
        for e in page.events {
            if args.out.json {
                output::line(serde_json::to_string(&e)?)?;
            } else {
                let task = e.task_id.map(|t| t.to_string()).unwrap_or_default();
                output::line(format!(
                    "{:>8} {:<28} {:<24} {} {}",
                    e.id, e.stream, e.kind, task, e.data
                ))?;
            }
            seen += 1;
            if args.count.is_some_and(|c| seen >= c) {
                return Ok(());
            }
        }
    }
}
