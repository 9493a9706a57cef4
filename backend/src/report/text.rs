//! Plain-text rendering: what a postmaster form or a .txt file takes. Prose wraps at
//! 78 columns; SMTP replies and DNS records are evidence and keep their exact bytes,
//! however long.

use super::{EscalationReport, Field, Item};

const WIDTH: usize = 78;
/// Label columns wider than this would squeeze the values into a narrow strip.
const MAX_LABEL: usize = 24;
/// Indent of DNS records under a check: reads as part of the row, and leaves the
/// record itself untouched.
const RECORD_INDENT: &str = "    ";

pub(super) fn render(r: &EscalationReport) -> String {
    format!("Subject: {}\n\n{}", r.subject, render_body(r))
}

/// Without the subject line: in an email the subject is a header.
pub(super) fn render_body(r: &EscalationReport) -> String {
    let mut out = String::new();
    out.push_str(&r.greeting);
    out.push_str("\n\n");
    for p in &r.opening {
        push_wrapped(&mut out, p, "", "");
        out.push('\n');
    }
    for s in &r.sections {
        out.push_str(&s.title);
        out.push('\n');
        out.push_str(&"-".repeat(s.title.chars().count()));
        out.push_str("\n\n");
        for item in &s.items {
            render_item(&mut out, item);
            out.push('\n');
        }
    }
    for p in &r.closing {
        push_wrapped(&mut out, p, "", "");
        out.push('\n');
    }
    for line in &r.signature {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn render_item(out: &mut String, item: &Item) {
    match item {
        Item::Paragraph { text } => push_wrapped(out, text, "", ""),
        Item::Fields { heading, rows } => {
            if let Some(h) = heading {
                push_wrapped(out, h, "", "");
            }
            render_fields(out, rows);
        }
        Item::Quote { heading, lines } => {
            push_wrapped(out, heading, "", "");
            for line in lines {
                out.push_str(line);
                out.push('\n');
            }
        }
        Item::Table {
            heading,
            columns,
            rows,
        } => {
            if let Some(h) = heading {
                push_wrapped(out, h, "", "");
            }
            render_table(out, columns, rows);
        }
    }
}

fn render_fields(out: &mut String, rows: &[Field]) {
    let width = rows
        .iter()
        .map(|f| f.label.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .min(MAX_LABEL + 2);
    let indent = " ".repeat(width);
    for f in rows {
        let label = format!("{}:", f.label);
        let first = format!("{label:<width$}");
        if first.chars().count() > width {
            // A label too long for the column gets its own line.
            out.push_str(&label);
            out.push('\n');
            push_wrapped(out, &f.value, &indent, &indent);
        } else {
            push_wrapped(out, &f.value, &first, &indent);
        }
        for more in &f.more {
            push_wrapped(out, more, &indent, &indent);
        }
        for rec in &f.records {
            out.push_str(RECORD_INDENT);
            out.push_str(rec);
            out.push('\n');
        }
    }
}

fn render_table(out: &mut String, columns: &[String], rows: &[Vec<String>]) {
    let n = columns.len();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).map_or("", String::as_str);
            if i == 0 {
                s.push_str(&format!("{cell:<w$}"));
            } else {
                // Counts line up on the right, as numbers do.
                s.push_str(&format!("  {cell:>w$}"));
            }
        }
        s.trim_end().to_string()
    };
    out.push_str(&line(columns));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
        out.push('\n');
    }
}

/// Greedy word wrap; a word longer than the line (a URL) stays whole rather than being
/// broken.
fn push_wrapped(out: &mut String, text: &str, first_prefix: &str, rest_prefix: &str) {
    let mut line = first_prefix.to_string();
    let mut len = first_prefix.chars().count();
    let mut empty = true;
    for word in text.split_whitespace() {
        let wlen = word.chars().count();
        if !empty && len + 1 + wlen > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest_prefix.to_string();
            len = rest_prefix.chars().count();
            empty = true;
        }
        if !empty {
            line.push(' ');
            len += 1;
        }
        line.push_str(word);
        len += wlen;
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::push_wrapped;

    #[test]
    fn wraps_at_78_with_a_hanging_indent_and_keeps_long_words_whole() {
        let mut out = String::new();
        let text = "word ".repeat(40);
        push_wrapped(&mut out, &text, "Label:  ", "        ");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= 78), "{out}");
        assert!(lines[0].starts_with("Label:  word"));
        assert!(lines[1].starts_with("        word"));

        let mut out = String::new();
        let url = format!("https://example.net/{}", "x".repeat(90));
        push_wrapped(&mut out, &format!("see {url} now"), "", "");
        assert_eq!(out, format!("see\n{url}\nnow\n"));
    }
}
