//! What the man pages say beyond clap's flags: EXIT STATUS, FILES and
//! SIGNALS of each program's own page, and `lb.yaml(5)`, generated from
//! the configuration reference in `docs/OPERATIONS.md` so the page and the
//! document cannot drift.

use std::{io, path::Path};

/// Sections a command's own page has beyond what clap knows, as roff.
pub struct ManExtra {
    /// (code, meaning) rows of EXIT STATUS.
    pub exit_status: &'static [(&'static str, &'static str)],
    /// (path, what) rows of FILES.
    pub files: &'static [(&'static str, &'static str)],
    /// (signal, effect) rows of SIGNALS; empty: no section.
    pub signals: &'static [(&'static str, &'static str)],
}

pub fn roff_rows(out: &mut Vec<u8>, title: &str, rows: &[(&str, &str)]) {
    if rows.is_empty() {
        return;
    }
    out.extend_from_slice(format!(".SH \"{title}\"\n").as_bytes());
    for (term, text) in rows {
        out.extend_from_slice(
            format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                roff_escape(term),
                roff_escape(text)
            )
            .as_bytes(),
        );
    }
}

/// Text safe as a roff line: backslashes doubled, a leading `.` or `'`
/// not taken for a request.
pub fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// Markdown (the subset docs/OPERATIONS.md uses: headings, paragraphs,
/// lists, fenced code, tables, `code`, **bold**) as roff body text.
pub fn markdown_to_roff(md: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    let lines: Vec<&str> = md.lines().collect();
    for (i, line) in lines.iter().copied().enumerate() {
        if line.starts_with("```") {
            out.push_str(if in_code {
                ".fi\n.RE\n"
            } else {
                ".RS 4\n.nf\n"
            });
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push_str(&roff_escape(line));
            out.push('\n');
            continue;
        }
        let t = line.trim_end();
        if t.is_empty() {
            out.push_str(".PP\n");
        } else if let Some(h) = t.strip_prefix("### ") {
            out.push_str(&format!(".SS \"{}\"\n", inline(h).replace('"', "")));
        } else if let Some(h) = t.strip_prefix("## ") {
            out.push_str(&format!(
                ".SH \"{}\"\n",
                inline(h).to_uppercase().replace('"', "")
            ));
        } else if t.starts_with('|') {
            // Tables: one row per line, cells separated; the rule row goes.
            let rule = |l: &str| {
                l.starts_with('|') && l.chars().all(|c| matches!(c, '|' | '-' | ' ' | ':'))
            };
            // The rule row goes, and the header row above it: each entry
            // reads as a term and its text.
            if rule(t) || lines.get(i + 1).is_some_and(|n| rule(n.trim_end())) {
                continue;
            }
            let cells: Vec<String> = t
                .trim_matches('|')
                .split('|')
                .map(|c| inline(c.trim()))
                .collect();
            out.push_str(&format!(
                ".TP\n{}\n{}\n",
                cells[0],
                cells[1..].join(" \\(em ")
            ));
        } else if let Some(item) = t.strip_prefix("- ") {
            out.push_str(&format!(".IP \\(bu 2\n{}\n", inline(item)));
        } else {
            out.push_str(&inline(t.trim_start()));
            out.push('\n');
        }
    }
    out
}

/// `code` in bold, **bold** in bold, the rest escaped.
fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("**") {
            out.push_str(if bold { "\\fR" } else { "\\fB" });
            bold = !bold;
            rest = r;
        } else if let Some(r) = rest.strip_prefix('`') {
            let end = r.find('`').unwrap_or(r.len());
            out.push_str("\\fB");
            out.push_str(&roff_escape(&r[..end]).replace("\\&", ""));
            out.push_str("\\fR");
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let next = rest
                .find(['`', '*'])
                .filter(|&i| i > 0)
                .unwrap_or(rest.len());
            let (chunk, r) = if rest.starts_with('*') {
                rest.split_at(1)
            } else {
                rest.split_at(next)
            };
            out.push_str(&chunk.replace('\\', "\\e").replace('-', "\\-"));
            rest = r;
        }
    }
    if out.starts_with('.') || out.starts_with('\'') {
        format!("\\&{out}")
    } else {
        out
    }
}

impl ManExtra {
    /// The sections as roff, appended to the program's own page.
    pub fn roff(&self) -> Vec<u8> {
        let mut out = vec![];
        roff_rows(&mut out, "EXIT STATUS", self.exit_status);
        roff_rows(&mut out, "FILES", self.files);
        roff_rows(&mut out, "SIGNALS", self.signals);
        out
    }
}

/// The configuration reference: `docs/OPERATIONS.md` from its
/// "Configuration reference" heading to the next `## ` heading.
const OPERATIONS: &str = include_str!("../../docs/OPERATIONS.md");

/// Writes `lb.yaml.5` into `dir`.
pub fn config_page(dir: &Path) -> io::Result<std::path::PathBuf> {
    let start = OPERATIONS
        .find("## Configuration reference")
        .ok_or_else(|| io::Error::other("docs/OPERATIONS.md has no configuration reference"))?;
    let body = &OPERATIONS[start..];
    let body = body["## Configuration reference".len()..]
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let mut page = format!(
        ".TH LB.YAML 5 \"\" \"lb {}\" \"File Formats\"\n.SH NAME\nlb.yaml \\- configuration of the lb load balancer agent (lbd)\n.SH SYNOPSIS\n/etc/lb/lb.yaml\n.SH DESCRIPTION\n",
        env!("CARGO_PKG_VERSION")
    );
    page.push_str(&markdown_to_roff(body));
    page.push_str(".SH \"SEE ALSO\"\nlbd(8), lbctl(1), lbd\\-check(8)\n");
    let path = dir.join("lb.yaml.5");
    std::fs::write(&path, page)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::{markdown_to_roff, roff_escape};

    #[test]
    fn markdown_becomes_roff_that_no_line_can_break() {
        let roff = markdown_to_roff(
            "### `node` — where\n\nA **bold** `x-y` word.\n.dot at the start\n\n| key | default |\n| --- | --- |\n| `a` | 1 |\n\n```yaml\n.vips: []\n```\n- item\n",
        );
        assert!(roff.contains(".SS \"\\fBnode\\fR — where\"\n"), "{roff}");
        assert!(
            roff.contains("A \\fBbold\\fR \\fBx\\-y\\fR word.\n"),
            "{roff}"
        );
        assert!(roff.contains("\\&.dot at the start\n"), "{roff}");
        assert!(roff.contains(".TP\n\\fBa\\fR\n1\n"), "{roff}");
        assert!(
            !roff.contains("default"),
            "the header row stays out: {roff}"
        );
        assert!(roff.contains(".nf\n\\&.vips: []\n.fi\n"), "{roff}");
        assert!(roff.contains(".IP \\(bu 2\nitem\n"), "{roff}");
        // Every line that starts with a dot is a request this code wrote.
        for l in roff.lines().filter(|l| l.starts_with('.')) {
            assert!(
                [
                    ".SS", ".SH", ".PP", ".TP", ".IP", ".RS", ".RE", ".nf", ".fi"
                ]
                .iter()
                .any(|r| l.starts_with(r)),
                "{l}"
            );
        }
        assert_eq!(roff_escape("a\\b"), "a\\eb");
    }
}
