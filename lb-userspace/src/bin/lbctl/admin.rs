//! `lbctl drain|undrain|maintenance|weight`: one backend's admin state or
//! weight, through the agent; prints the VIP as it is afterwards.

use lb::{
    client::AdminVerb,
    core::balancer::{BackendState, VipState},
};
use serde::Serialize;

use crate::{
    Ctx, Fail,
    args::{BackendRef, Output},
    table::{self, Row, health, percent, word},
};

#[derive(Serialize)]
#[serde(transparent)]
struct BackendRow<'a>(&'a BackendState);

impl Row for BackendRow<'_> {
    const HEADERS: &'static [&'static str] = &["BACKEND", "STATE", "WEIGHT", "HEALTH", "SHARE"];
    fn cells(&self) -> Vec<String> {
        let b = self.0;
        vec![
            b.address.to_string(),
            word(&b.state),
            b.weight.to_string(),
            health(b.healthy),
            percent(b.ring_share, 2),
        ]
    }
}

fn show(ctx: &Ctx<'_>, v: &VipState) {
    if ctx.output() == Output::Json {
        table::print_json(v);
        return;
    }
    lb::outln!("VIP {} digest {}", v.name, v.digest);
    let rows: Vec<BackendRow> = v.backends.iter().map(BackendRow).collect();
    table::print(Output::Table, &rows);
}

pub async fn set(ctx: &Ctx<'_>, t: &BackendRef, verb: AdminVerb) -> Result<(), Fail> {
    let v = ctx.agent()?.admin(&t.vip, t.backend, verb).await?;
    show(ctx, &v);
    Ok(())
}

pub async fn weight(ctx: &Ctx<'_>, t: &BackendRef, weight: i64) -> Result<(), Fail> {
    let v = ctx.agent()?.weight(&t.vip, t.backend, weight).await?;
    show(ctx, &v);
    Ok(())
}
