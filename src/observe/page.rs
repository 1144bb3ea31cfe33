//! The status page: meta members and their leader, compute nodes with what they hold and
//! when the leader last heard from them, collections, jobs, and the failovers still in the
//! registry. Plain HTML rendered on the server, which reloads itself every few seconds.

use std::fmt::Write;

use grape_meta::catalog::Catalog;
use grape_proto::meta::v1 as pb;
use grape_proto::v1;

/// Seconds between reloads of the page.
const REFRESH_SECS: u32 = 5;

/// Jobs shown, newest first.
const JOBS_SHOWN: usize = 20;

/// What the page shows.
pub struct PageData<'a> {
    /// `dev`, `meta` or `compute`.
    pub role: &'a str,
    /// The meta leader's status, or why it could not be had.
    pub status: Result<&'a pb::StatusResponse, &'a str>,
    /// The catalog as this process has applied it.
    pub catalog: Option<&'a Catalog>,
    /// This compute node's own status, on a node.
    pub node: Option<&'a v1::StatusResponse>,
    /// Whether this process is ready, or why not.
    pub ready: Result<(), &'a str>,
}

/// `text` with HTML's special characters escaped.
fn esc(text: &str) -> String {
    text.chars().fold(String::with_capacity(text.len()), |mut out, c| {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
        out
    })
}

/// Bytes for people: `1.5 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A table with `headers` and `rows` of already escaped cells; `empty` when there are none.
fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        let _ = writeln!(out, "<p class=\"empty\">{}</p>", esc(empty));
        return;
    }
    out.push_str("<table>");
    if headers.iter().any(|h| !h.is_empty()) {
        out.push_str("<thead><tr>");
        for h in headers {
            let _ = write!(out, "<th>{}</th>", esc(h));
        }
        out.push_str("</tr></thead>");
    }
    out.push_str("<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f0eef5}\
.ok{color:#17702e}.bad{color:#b3261e}.empty{color:#777}.muted{color:#777;font-size:.85em}";

/// The whole page.
pub fn render(data: &PageData<'_>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>Grape status</title><style>{STYLE}</style></head><body>\n<h1>Grape — {}</h1>\n",
        esc(data.role)
    );
    match data.ready {
        Ok(()) => out.push_str("<p id=\"ready\" class=\"ok\">Ready.</p>\n"),
        Err(why) => {
            let _ = writeln!(out, "<p id=\"ready\" class=\"bad\">Not ready: {}</p>", esc(why));
        }
    }
    if let Some(node) = data.node {
        this_node(&mut out, node);
    }
    match data.status {
        Ok(status) => {
            meta_group(&mut out, status);
            compute_nodes(&mut out, status);
        }
        Err(why) => {
            let _ = writeln!(out, "<h2>Meta group</h2><p class=\"bad\">The meta group does not answer: {}</p>", esc(why));
        }
    }
    if let Some(catalog) = data.catalog {
        collections(&mut out, catalog);
        jobs(&mut out, catalog);
        failovers(&mut out, catalog);
    }
    let _ = writeln!(out, "<p class=\"muted\">Grape {} · reloads every {REFRESH_SECS} s · <a href=\"/metrics\">metrics</a></p></body></html>", env!("CARGO_PKG_VERSION"));
    out
}

fn this_node(out: &mut String, node: &v1::StatusResponse) {
    let _ = writeln!(out, "<h2>This node</h2>");
    let mut rows = vec![
        vec!["node id".into(), node.node_id.to_string()],
        vec!["storage".into(), esc(&node.storage_url)],
        vec!["segments / rows".into(), format!("{} / {}", node.segments_loaded, node.rows_loaded)],
        vec!["memory".into(), bytes(node.memory_bytes)],
        vec!["requests running / queued".into(), format!("{} / {}", node.requests_running, node.requests_queued)],
        vec![
            "requests rejected / cancelled / timed out".into(),
            format!("{} / {} / {}", node.requests_rejected, node.requests_cancelled, node.requests_timed_out),
        ],
    ];
    if !node.catalog_error.is_empty() {
        rows.push(vec!["catalog".into(), format!("<span class=\"bad\">{}</span>", esc(&node.catalog_error))]);
    }
    table(out, &["", ""], &rows, "");
}

fn meta_group(out: &mut String, status: &pb::StatusResponse) {
    let _ = writeln!(
        out,
        "<h2>Meta group</h2><p>Leader: <b id=\"leader\">{}</b> · term {} · last log {} · committed {} · applied {}</p>",
        if status.leader_id == 0 { "none".to_string() } else { status.leader_id.to_string() },
        status.term,
        status.last_log_index.unwrap_or(0),
        status.committed_index.unwrap_or(0),
        status.applied_index.unwrap_or(0),
    );
    let rows: Vec<Vec<String>> = status
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                esc(&m.addr),
                if m.id == status.leader_id { "leader" } else if m.voter { "voter" } else { "learner" }.to_string(),
                m.lag.map_or("–".into(), |l| l.to_string()),
            ]
        })
        .collect();
    table(out, &["member", "address", "role", "lag (entries)"], &rows, "No members.");
}

fn compute_nodes(out: &mut String, status: &pb::StatusResponse) {
    out.push_str("<h2>Compute nodes</h2>\n");
    let rows: Vec<Vec<String>> = status
        .compute_nodes
        .iter()
        .map(|n| {
            let class = if n.state == "live" { "ok" } else { "bad" };
            vec![
                n.id.to_string(),
                esc(&n.addr),
                format!("<span class=\"{class}\">{}</span>", esc(&n.state)),
                format!("{} ({} assigned, {} loading, {} failed)", n.segments_loaded, n.assigned_segments, n.segments_loading, n.segments_failed),
                n.rows_loaded.to_string(),
                bytes(n.memory_used),
                n.last_heartbeat_ms.map_or("–".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            ]
        })
        .collect();
    table(out, &["node", "address", "state", "segments", "rows", "memory", "last heartbeat"], &rows, "No compute node has registered.");
}

fn collections(out: &mut String, catalog: &Catalog) {
    out.push_str("<h2>Collections</h2>\n");
    let rows: Vec<Vec<String>> = catalog
        .collections
        .values()
        .map(|c| {
            let segments: usize = c.shards.iter().map(|s| s.segments.len()).sum();
            let rows: u64 = c.shards.iter().flat_map(|s| &s.segments).map(|s| s.rows).sum();
            let indexed = c.shards.iter().flat_map(|s| &s.segments).filter(|s| s.index.is_some()).count();
            vec![
                format!("<span class=\"collection\">{}</span>", esc(&c.spec.name)),
                c.spec.dim.to_string(),
                esc(&format!("{:?}", c.spec.metric).to_lowercase()),
                format!("{} × {}", c.spec.shards, c.spec.replicas),
                rows.to_string(),
                format!("{segments} ({indexed} indexed)"),
                c.version.to_string(),
            ]
        })
        .collect();
    table(out, &["collection", "dim", "metric", "shards × replicas", "rows stored", "segments", "version"], &rows, "No collections yet.");
}

fn jobs(out: &mut String, catalog: &Catalog) {
    out.push_str("<h2>Jobs</h2>\n");
    let rows: Vec<Vec<String>> = catalog
        .jobs
        .jobs
        .values()
        .rev()
        .take(JOBS_SHOWN)
        .map(|j| {
            vec![
                j.id.to_string(),
                j.spec.kind().to_string(),
                j.state.name().to_string(),
                format!("{}/{}", j.attempt, j.max_attempts),
                format!("{}/{}", j.progress.done, j.progress.total),
                esc(j.last_error.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    table(out, &["job", "kind", "state", "attempt", "progress", "last error"], &rows, "No jobs.");
}

fn failovers(out: &mut String, catalog: &Catalog) {
    out.push_str("<h2>Failovers</h2>\n");
    let rows: Vec<Vec<String>> = catalog
        .compute
        .nodes
        .values()
        .filter_map(|n| match &n.state {
            grape_meta::nodes::NodeState::Dead { reason } => Some(vec![n.id.to_string(), esc(&n.addr), esc(reason)]),
            _ => None,
        })
        .collect();
    table(out, &["node", "address", "declared dead because"], &rows, "No compute node is dead.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_sections_render_without_data() {
        assert_eq!(esc("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        let html = render(&PageData { role: "compute", status: Err("down <now>"), catalog: None, node: None, ready: Err("meta") });
        assert!(html.contains("down &lt;now&gt;") && html.contains("Not ready: meta"), "{html}");
    }
}
