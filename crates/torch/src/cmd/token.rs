//! `torch token create`.

use anyhow::Result;
use torch_api::rest::{CreateTokenRequest, CreateTokenResponse, Role};

use crate::cli::{HubArgs, OutArgs, RoleArg};
use crate::client::Client;
use crate::output;

pub(crate) async fn create(
    hub: HubArgs,
    out: OutArgs,
    role: RoleArg,
    name: Option<String>,
) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let role = match role {
        RoleArg::Admin => Role::Admin,
        RoleArg::Submitter => Role::Submitter,
        RoleArg::Agent => Role::Agent,
    };
    let resp: CreateTokenResponse = client
        .post("/api/v1/tokens", &CreateTokenRequest { role, name })
        .await?;
    if out.json {
        output::json(&resp)
    } else {
        output::line(&resp.token)
    }
}
