//! The HTML alternative of the report email, from `templates/report/report.html`.

use super::{EscalationReport, Item, ReportError};
use askama::Template;

#[derive(Template)]
#[template(path = "report/report.html")]
struct ReportHtml<'a> {
    r: &'a EscalationReport,
}

pub(super) fn render(r: &EscalationReport) -> Result<String, ReportError> {
    ReportHtml { r }
        .render()
        .map_err(|e| ReportError::Render(e.to_string()))
}
