//! `sluice status` and `sluice connectors …`: a running `sluice run` seen and steered through
//! its REST API (Kafka Connect's), from a terminal.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cli::{ConnectorsCommand, RestArgs};

pub(crate) struct Api {
    pub(crate) base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Api {
    fn new(args: &RestArgs) -> Result<Api> {
        Api::with_timeout(args, std::time::Duration::from_secs(60))
    }

    /// A client whose calls give up after `timeout` (`sluice top` must not freeze).
    pub(crate) fn with_timeout(args: &RestArgs, timeout: std::time::Duration) -> Result<Api> {
        Ok(Api {
            base: args.url.trim_end_matches('/').to_string(),
            token: args.token.clone(),
            http: reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()?,
        })
    }

    /// A call; the body as JSON (`Null` when empty), or the API's error message.
    pub(crate) fn call(&self, method: reqwest::Method, path: &str) -> Result<Value> {
        self.call_with(method, path, None)
    }

    /// A call with a JSON body.
    fn call_with(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().with_context(|| {
            format!(
                "cannot reach the REST API at {} (is `sluice run` running? pass --url)",
                self.base
            )
        })?;
        let status = resp.status();
        let text = resp.text()?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let message = body["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| body.to_string());
            bail!("{method} {path}: {} {message}", status.as_u16());
        }
        Ok(body)
    }

    pub(crate) fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path)
    }
}

/// A table of every connector and its tasks; failed tasks' traces below it.
pub fn status(args: &RestArgs) -> Result<()> {
    let api = Api::new(args)?;
    let all = api.get("/connectors?expand=status&expand=info")?;
    let Some(all) = all.as_object() else {
        bail!("unexpected answer from {}/connectors: {all}", api.base);
    };
    println!(
        "{:<24} {:<6} {:<12} {:<10} TASKS",
        "CONNECTOR", "ROLE", "TYPE", "STATE"
    );
    let mut traces = Vec::new();
    for (name, c) in all {
        let status = &c["status"];
        let tasks: Vec<String> = status["tasks"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|t| {
                        if let Some(trace) = t["trace"].as_str() {
                            traces.push(format!("{name}/{}: {trace}", t["id"]));
                        }
                        format!("{}:{}", t["id"], t["state"].as_str().unwrap_or("?"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<24} {:<6} {:<12} {:<10} {}",
            name,
            status["type"].as_str().unwrap_or("?"),
            c["info"]["config"]["connector.class"]
                .as_str()
                .unwrap_or("?"),
            status["connector"]["state"].as_str().unwrap_or("?"),
            if tasks.is_empty() {
                "-".to_string()
            } else {
                tasks.join(" ")
            }
        );
    }
    for t in traces {
        println!("\n{t}");
    }
    Ok(())
}

pub fn connectors(args: &RestArgs, command: ConnectorsCommand) -> Result<()> {
    use reqwest::Method;
    let api = Api::new(args)?;
    let (method, path, done) = match &command {
        ConnectorsCommand::List => {
            for name in api.get("/connectors")?.as_array().into_iter().flatten() {
                println!("{}", name.as_str().unwrap_or_default());
            }
            return Ok(());
        }
        ConnectorsCommand::Create { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let body: Value = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not JSON: it holds Kafka Connect's POST body, {{\"name\": …, \"config\": {{…}}}}",
                    file.display()
                )
            })?;
            let info = api.call_with(Method::POST, "/connectors", Some(body))?;
            println!("{}: created", info["name"].as_str().unwrap_or_default());
            return Ok(());
        }
        ConnectorsCommand::Config { name } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&api.get(&format!("/connectors/{name}/config"))?)?
            );
            return Ok(());
        }
        ConnectorsCommand::Delete { name } => (
            Method::DELETE,
            format!("/connectors/{name}"),
            format!("{name}: deleted"),
        ),
        ConnectorsCommand::Status { name } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&api.get(&format!("/connectors/{name}/status"))?)?
            );
            return Ok(());
        }
        ConnectorsCommand::Pause { name } => (
            Method::PUT,
            format!("/connectors/{name}/pause"),
            format!("{name}: pausing"),
        ),
        ConnectorsCommand::Resume { name } => (
            Method::PUT,
            format!("/connectors/{name}/resume"),
            format!("{name}: resuming"),
        ),
        ConnectorsCommand::Stop { name } => (
            Method::PUT,
            format!("/connectors/{name}/stop"),
            format!("{name}: stopped"),
        ),
        ConnectorsCommand::Restart {
            name,
            include_tasks,
            only_failed,
        } => (
            Method::POST,
            format!(
                "/connectors/{name}/restart?includeTasks={include_tasks}&onlyFailed={only_failed}"
            ),
            format!("{name}: restarting"),
        ),
        ConnectorsCommand::RestartTask { name, task } => (
            Method::POST,
            format!("/connectors/{name}/tasks/{task}/restart"),
            format!("{name}/{task}: restarting"),
        ),
    };
    let body = api.call(method, &path)?;
    println!("{done}");
    if !body.is_null() {
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    Ok(())
}
