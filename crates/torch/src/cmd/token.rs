//! `torch token create | list | revoke`.

use anyhow::Result;
use torch_api::rest::{
    CreateTokenRequest, CreateTokenResponse, Role, TokenList, TokenState, TokenView,
};

use crate::cli::{HubArgs, OutArgs, RoleArg};
use crate::client::Client;
use crate::exit::{BAD_INPUT, exit};
use crate::output;

/// What `torch token create` was asked for.
pub(crate) struct CreateArgs {
    pub(crate) role: RoleArg,
    pub(crate) name: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) expires: Option<String>,
}

pub(crate) async fn create(hub: HubArgs, out: OutArgs, args: CreateArgs) -> Result<()> {
    let role = match args.role {
        RoleArg::Admin => Role::Admin,
        RoleArg::Submitter => Role::Submitter,
        RoleArg::Agent => Role::Agent,
        RoleArg::Node => Role::Node,
    };
    let expires_in_ms = match &args.expires {
        Some(d) => {
            let d = humantime::parse_duration(d)
                .map_err(|e| exit(BAD_INPUT, format!("--expires {d:?}: {e} (e.g. 30d, 12h)")))?;
            if d.is_zero() {
                return Err(exit(BAD_INPUT, "--expires must be longer than zero"));
            }
            Some(d.as_millis() as u64)
        }
        None => None,
    };
    let client = Client::new(&hub.hub, hub.token)?;
    let req = CreateTokenRequest {
        role,
        name: args.name,
        tenant: args.tenant,
        expires_in_ms,
    };
    let resp: CreateTokenResponse = client.post("/api/v1/tokens", &req).await?;
    if out.json {
        output::json(&resp)
    } else {
        output::line(&resp.token)
    }
}

pub(crate) async fn list(hub: HubArgs, out: OutArgs) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let list: TokenList = client.get("/api/v1/tokens").await?;
    if out.json {
        return output::json(&list);
    }
    let now = output::now_ms();
    let mut t = output::table(&[
        "ID",
        "NAME",
        "ROLE",
        "TENANT",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATE",
    ]);
    for tok in &list.tokens {
        t.add_row(row(tok, now));
    }
    output::line(t.to_string())
}

/// One table row: ages as `5m ago`, expiry as `in 3d`.
fn row(tok: &TokenView, now: u64) -> Vec<String> {
    let ago = |ms: Option<u64>| ms.map_or("-".into(), |ms| format!("{} ago", output::age(ms, now)));
    let expires = match tok.expires_ms {
        None => "never".to_string(),
        Some(e) if e > now => format!("in {}", output::age(now, e)),
        Some(e) => format!("{} ago", output::age(e, now)),
    };
    let state = match tok.state {
        TokenState::Active => "active",
        TokenState::Expired => "expired",
        TokenState::Revoked => "revoked",
        TokenState::Unknown => "?",
    };
    vec![
        tok.id.clone(),
        tok.name.clone(),
        tok.role.clone(),
        tok.tenant.clone().unwrap_or_else(|| "-".into()),
        ago(Some(tok.created_ms)),
        ago(tok.last_used_ms),
        expires,
        state.into(),
    ]
}

pub(crate) async fn revoke(hub: HubArgs, out: OutArgs, id: String) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let path = format!("/api/v1/tokens/{id}/revoke");
    let view: TokenView = client.post(&path, &serde_json::json!({})).await?;
    if out.json {
        output::json(&view)
    } else {
        output::line(format!("revoked {} ({})", view.id, view.name))
    }
}
