//! `lbctl decap`: on a backend, the decap programs `lbd decap` attached.

use std::path::Path;

use lb::kernel::decap::{self, AttachedDecap};
use serde::Serialize;

use crate::{
    Ctx, Fail, fail,
    table::{self, Row},
};

#[derive(Serialize)]
#[serde(transparent)]
struct DecapRow(AttachedDecap);

impl Row for DecapRow {
    const HEADERS: &'static [&'static str] = &[
        "IFACE",
        "PROG",
        "ACCEPTS",
        "FROM",
        "VIPS",
        "REFUSED",
        "GUE PORT",
        "DECAP_OK",
        "DECAP_PASS",
        "DECAP_DROP_MALFORMED",
        "DECAP_REFUSED_SOURCE",
        "DECAP_REFUSED_INNER",
    ];
    fn cells(&self) -> Vec<String> {
        let d = &self.0;
        let c = &d.checks;
        let list = |any: bool, items: Vec<String>| {
            if any {
                "any".to_string()
            } else if items.is_empty() {
                "none".to_string()
            } else {
                items.join(",")
            }
        };
        let strings = |v: &[std::net::IpAddr]| v.iter().map(ToString::to_string).collect();
        let gue = if d.gue_port == 0 {
            "off".into()
        } else {
            d.gue_port.to_string()
        };
        let mut row = vec![
            d.iface.clone(),
            d.program_id.to_string(),
            list(c.any_destination, strings(&d.addresses)),
            list(
                c.any_source,
                d.lb_sources.iter().map(ToString::to_string).collect(),
            ),
            list(c.any_vip, strings(&d.vips)),
            if c.drop_refused { "drop" } else { "pass" }.to_string(),
            gue,
        ];
        row.extend(
            [
                d.decap_ok,
                d.decap_pass,
                d.decap_drop_malformed,
                d.decap_refused_source,
                d.decap_refused_inner,
            ]
            .map(|n| n.to_string()),
        );
        row
    }
}

pub fn show(ctx: &Ctx<'_>, pin_path: &Path) -> Result<(), Fail> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(fail(6, "reading the decap program's maps needs root"));
    }
    let attached =
        decap::attached(pin_path).map_err(|e| fail(1, format!("{:#}", anyhow::Error::from(e))))?;
    if attached.is_empty() {
        return Err(fail(
            6,
            format!(
                "no decap program pinned under {}: run `lbd decap --iface IFACE --address ADDR --lb-source PREFIX --vip VIP` (or systemctl start lb-decap@IFACE); tunnelled packets are dropped until then",
                pin_path.display()
            ),
        ));
    }
    let rows: Vec<DecapRow> = attached.into_iter().map(DecapRow).collect();
    table::print(ctx.output(), &rows);
    Ok(())
}
