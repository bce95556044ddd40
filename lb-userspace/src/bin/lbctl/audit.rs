//! `lbctl audit`: the agent's audit log, and `lbctl whoami`.

use std::path::Path;

use lb::daemon::audit::{self, Record};
use serde::Serialize;

use crate::{
    Ctx, Fail, fail,
    table::{self, Row},
};

#[derive(Serialize)]
#[serde(transparent)]
struct AuditRow(Record);

impl Row for AuditRow {
    const HEADERS: &'static [&'static str] = &[
        "TIME (UTC)",
        "WHO",
        "SOURCE",
        "FROM",
        "ACTION",
        "RESULT",
        "DETAIL",
    ];
    fn cells(&self) -> Vec<String> {
        let r = &self.0;
        let who = match &r.tenant {
            Some(t) => format!("{} ({t})", r.who),
            None => r.who.clone(),
        };
        vec![
            r.time.clone(),
            who,
            r.source.clone(),
            r.from.clone().unwrap_or_else(|| "-".into()),
            r.action.clone(),
            r.result.clone(),
            r.detail.clone(),
        ]
    }
}

pub fn show(ctx: &Ctx<'_>, file: &Path, last: Option<usize>, rejected: bool) -> Result<(), Fail> {
    let mut records = audit::read(file).map_err(|e| {
        fail(
            1,
            format!(
                "{}: {e} (the audit log is audit.log in lbd's state_dir; --file names another)",
                file.display()
            ),
        )
    })?;
    if rejected {
        records.retain(|r| r.result == "rejected");
    }
    if let Some(n) = last {
        let skip = records.len().saturating_sub(n);
        records.drain(..skip);
    }
    let rows: Vec<AuditRow> = records.into_iter().map(AuditRow).collect();
    table::print(ctx.output(), &rows);
    Ok(())
}

#[derive(Serialize)]
#[serde(transparent)]
struct WhoRow(lb::daemon::api::wire::WhoAmI);

impl Row for WhoRow {
    const HEADERS: &'static [&'static str] = &["WHO", "ROLE", "TENANT"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.0.who.clone(),
            self.0.role.name().into(),
            self.0.tenant.clone().unwrap_or_else(|| "-".into()),
        ]
    }
}

pub async fn whoami(ctx: &Ctx<'_>) -> Result<(), Fail> {
    let me = ctx.agent()?.whoami().await?;
    table::print(ctx.output(), &[WhoRow(me)]);
    Ok(())
}
