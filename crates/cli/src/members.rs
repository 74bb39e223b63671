//! The operator commands over the HTTP API: `raftkv status` (one table of every member, each
//! asked for its own view), `raftkv member list | add | promote | remove`, `raftkv leader
//! transfer` and `raftkv alarm list | disarm`. Each takes `--json`; under it, errors too are JSON (see `main.rs`).

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Common, api_url, check, print_json, send};

/// How long `raftkv status` waits for each member's own answer.
const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// `raftkv status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    common: Common,
}

impl StatusArgs {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.common.json
    }
}

/// `raftkv member ...`.
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// List the members: name, id, voter or learner, peer and client URLs.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Add a member that starts later (`raftkv serve --name NAME --join ...` at PEER_URL); it
    /// is promoted to voter once caught up, unless --learner.
    Add {
        /// The new member's name.
        name: String,
        /// Where it will listen for its peers.
        #[arg(long)]
        peer_url: String,
        /// Keep it a learner (not voting) until `raftkv member promote`.
        #[arg(long)]
        learner: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Make a learner that has caught up a voter.
    Promote {
        /// The learner's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a member (it stops being contacted; its peers refuse it).
    Remove {
        /// The member's name (or node id).
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

impl MemberCommand {
    /// The options every member command takes.
    pub fn common(&self) -> &Common {
        match self {
            MemberCommand::List { common }
            | MemberCommand::Add { common, .. }
            | MemberCommand::Promote { common, .. }
            | MemberCommand::Remove { common, .. } => common,
        }
    }
}

/// `raftkv leader ...`.
#[derive(Subcommand, Debug)]
pub enum LeaderCommand {
    /// Hand leadership to another voter: the one named, or the most caught-up one.
    Transfer {
        /// The voter to lead next.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

impl LeaderCommand {
    /// The options every leader command takes.
    pub fn common(&self) -> &Common {
        match self {
            LeaderCommand::Transfer { common, .. } => common,
        }
    }
}

/// `raftkv alarm ...`.
#[derive(Subcommand, Debug)]
pub enum AlarmCommand {
    /// List the raised alarms (NOSPACE: the storage quota is used up).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Clear every raised alarm (make room first: a store still over its quota raises NOSPACE
    /// again).
    Disarm {
        #[command(flatten)]
        common: Common,
    },
}

impl AlarmCommand {
    /// The options every alarm command takes.
    pub fn common(&self) -> &Common {
        match self {
            AlarmCommand::List { common } | AlarmCommand::Disarm { common } => common,
        }
    }
}

/// `raftkv alarm ...`.
pub async fn alarm(command: AlarmCommand) -> Result<()> {
    let common = command.common();
    common.http_only("alarm")?;
    let (answer, field) = match &command {
        AlarmCommand::List { .. } => (get_json(common, "/v1/alarms").await?, "alarms"),
        AlarmCommand::Disarm { .. } => (
            call(common, Method::DELETE, "/v1/alarms", None).await?,
            "disarmed",
        ),
    };
    if common.json {
        return print_json(&answer);
    }
    for a in answer[field].as_array().into_iter().flatten() {
        let member = a["member"].as_u64().unwrap_or(0);
        let name = a["alarm"].as_str().unwrap_or("?");
        match command {
            AlarmCommand::List { .. } => out!("memberID:{member:x} alarm:{name}"),
            AlarmCommand::Disarm { .. } => out!("disarmed memberID:{member:x} alarm:{name}"),
        }
    }
    Ok(())
}

/// Asks the first endpoint that answers for `GET path`.
async fn get_json(common: &Common, path: &str) -> Result<Value> {
    let (status, body) = send(common, Method::GET, |e| api_url(e, path, None), None).await?;
    check(status, &body)
}

/// Sends `method path` with a JSON body (if any) to the first endpoint that answers.
async fn call(common: &Common, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
    let body = body.map(|b| b.to_string().into_bytes());
    let (status, answer) = send(common, method, |e| api_url(e, path, None), body).await?;
    check(status, &answer)
}

/// One member as `raftkv status` shows it: the registry's record and its own view.
fn member_row(member: &Value, own: Result<Value, String>, leader_commit: u64) -> Value {
    let mut row = json!({
        "name": member["name"],
        "id": member["id"],
        "client_url": member["client_url"],
        "peer_url": member["peer_url"],
    });
    match own {
        Ok(s) => {
            let applied = s["applied_index"].as_u64().unwrap_or(0);
            row["reachable"] = json!(true);
            row["role"] = s["role"].clone();
            row["term"] = s["term"].clone();
            row["commit_index"] = s["commit_index"].clone();
            row["applied_index"] = json!(applied);
            row["lag"] = json!(leader_commit.saturating_sub(applied));
            row["healthy"] = s["healthy"].clone();
            row["version"] = s["version"].clone();
        }
        Err(e) => {
            row["reachable"] = json!(false);
            row["healthy"] = json!(false);
            row["error"] = json!(e);
        }
    }
    if member["role"] == "learner" && row["role"] == "follower" {
        row["role"] = json!("learner");
    }
    row
}

/// Every member's own view, with its lag behind the leader's commit index.
async fn member_table(common: &Common) -> Result<Vec<Value>> {
    let view = get_json(common, "/v1/status").await?;
    let members: Vec<Value> = view["members"].as_array().cloned().unwrap_or_default();
    let client = common
        .http_client()?
        .timeout(MEMBER_STATUS_TIMEOUT)
        .build()?;
    let asks = members.iter().map(|m| {
        let client = client.clone();
        let url = m["client_url"].as_str().unwrap_or("").to_string();
        async move {
            if url.is_empty() {
                return Err("its client URL is not known yet".to_string());
            }
            let answer = client
                .get(format!("{url}/v1/status"))
                .send()
                .await
                .map_err(|e| format!("unreachable: {e}"))?;
            answer
                .json::<Value>()
                .await
                .map_err(|e| format!("bad answer: {e}"))
        }
    });
    let owns = futures::future::join_all(asks).await;
    let leader_commit = owns
        .iter()
        .flatten()
        .filter(|s| s["role"] == "leader")
        .filter_map(|s| s["commit_index"].as_u64())
        .max()
        .or_else(|| view["commit_index"].as_u64())
        .unwrap_or(0);
    Ok(members
        .iter()
        .zip(owns)
        .map(|(m, own)| member_row(m, own, leader_commit))
        .collect())
}

/// `raftkv status`: one row per member.
pub async fn status(args: StatusArgs) -> Result<()> {
    args.common.http_only("status")?;
    let rows = member_table(&args.common).await?;
    if args.common.json {
        return print_json(&json!({ "members": rows }));
    }
    out!(
        "{:<12} {:<16} {:<10} {:>6} {:>10} {:>10} {:>8} {:<8} {:<8}",
        "NAME",
        "ID",
        "ROLE",
        "TERM",
        "COMMIT",
        "APPLIED",
        "LAG",
        "HEALTHY",
        "VERSION"
    );
    for r in &rows {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".to_string(),
            other => other.to_string(),
        };
        let id = r["id"]
            .as_u64()
            .map_or_else(|| "-".to_string(), |id| format!("{id:x}"));
        let role = if r["reachable"] == true {
            text(&r["role"])
        } else {
            "unreachable".to_string()
        };
        out!(
            "{:<12} {:<16} {:<10} {:>6} {:>10} {:>10} {:>8} {:<8} {:<8}",
            text(&r["name"]),
            id,
            role,
            text(&r["term"]),
            text(&r["commit_index"]),
            text(&r["applied_index"]),
            text(&r["lag"]),
            text(&r["healthy"]),
            text(&r["version"]),
        );
    }
    Ok(())
}

/// `raftkv member ...`.
pub async fn member(command: MemberCommand) -> Result<()> {
    command.common().http_only("member")?;
    let (answer, human) = match &command {
        MemberCommand::List { common } => {
            let answer = get_json(common, "/v1/members").await?;
            let mut lines = vec![format!(
                "{:<12} {:<16} {:<8} {:<28} {}",
                "NAME", "ID", "ROLE", "PEER URL", "CLIENT URL"
            )];
            for m in answer["members"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "{:<12} {:<16} {:<8} {:<28} {}",
                    m["name"].as_str().unwrap_or(""),
                    m["id"]
                        .as_u64()
                        .map_or_else(String::new, |id| format!("{id:x}")),
                    m["role"].as_str().unwrap_or(""),
                    m["peer_url"].as_str().unwrap_or(""),
                    m["client_url"].as_str().unwrap_or(""),
                ));
            }
            (answer, lines.join("\n"))
        }
        MemberCommand::Add {
            name,
            peer_url,
            learner,
            common,
        } => {
            let body = json!({ "peer_url": peer_url, "learner": learner });
            let answer = call(
                common,
                Method::POST,
                &format!("/v1/members/{name}"),
                Some(body),
            )
            .await?;
            let human = format!(
                "added {name} ({}) at {peer_url}; start it with `raftkv serve --name {name} \
                 --listen-peer ... --join <a member's client URL>`",
                if *learner {
                    "a learner until promoted"
                } else {
                    "promoted to voter once caught up"
                }
            );
            (answer, human)
        }
        MemberCommand::Promote { name, common } => {
            let path = format!("/v1/members/{name}/promote");
            let answer = call(common, Method::POST, &path, None).await?;
            (answer, format!("promoted {name} to voter"))
        }
        MemberCommand::Remove { name, common } => {
            let path = format!("/v1/members/{name}");
            let answer = call(common, Method::DELETE, &path, None).await?;
            (answer, format!("removed {name} from the cluster"))
        }
    };
    if command.common().json {
        return print_json(&answer);
    }
    out!("{human}");
    Ok(())
}

/// `raftkv leader transfer [--to NAME]`.
pub async fn leader(command: LeaderCommand) -> Result<()> {
    let LeaderCommand::Transfer { to, common } = &command;
    common.http_only("leader")?;
    let to = match to {
        Some(name) => name.clone(),
        None => most_caught_up_follower(common).await?,
    };
    let answer = call(
        common,
        Method::POST,
        "/v1/leader/transfer",
        Some(json!({ "to": to })),
    )
    .await?;
    if common.json {
        return print_json(&answer);
    }
    out!("{to} is the leader now");
    Ok(())
}

/// The reachable voter, other than the leader, that has applied the most.
async fn most_caught_up_follower(common: &Common) -> Result<String> {
    let rows = member_table(common).await?;
    if !rows.iter().any(|r| r["role"] == "leader") {
        bail!("no member says it leads: there is no leader to transfer from");
    }
    rows.iter()
        .filter(|r| r["reachable"] == true && r["role"] == "follower")
        .max_by_key(|r| r["applied_index"].as_u64().unwrap_or(0))
        .and_then(|r| r["name"].as_str().map(str::to_string))
        .ok_or_else(|| anyhow!("no other reachable voter to hand leadership to"))
}
