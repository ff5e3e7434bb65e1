//! `torch progress PCT [MSG]`: from inside a task, report progress.

use anyhow::Result;
use torch_api::rest::ProgressRequest;
use torch_api::{ENV_HUB, ENV_TASK_ID, ENV_TASK_TOKEN};

use crate::cli::ProgressArgs;
use crate::client::Client;
use crate::exit::{BAD_INPUT, exit};

pub(crate) async fn run(args: ProgressArgs) -> Result<()> {
    let var = |k: &str| {
        std::env::var(k).map_err(|_| {
            exit(
                BAD_INPUT,
                format!(
                    "{k} is not set: `torch progress` runs inside a task started by a torch agent"
                ),
            )
        })
    };
    let hub = var(ENV_HUB)?;
    let task = var(ENV_TASK_ID)?;
    let token = var(ENV_TASK_TOKEN)?;
    if !(0.0..=100.0).contains(&args.percent) {
        return Err(exit(
            BAD_INPUT,
            format!("percent {} must be between 0 and 100", args.percent),
        ));
    }
    let message = (!args.message.is_empty()).then(|| args.message.join(" "));
    let client = Client::new(&hub, Some(token))?;
    let _: serde_json::Value = client
        .post(
            &format!("/api/v1/tasks/{task}/progress"),
            &ProgressRequest {
                percent: args.percent,
                message,
            },
        )
        .await?;
    Ok(())
}
